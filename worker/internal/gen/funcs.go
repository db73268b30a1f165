package gen

import (
	"fmt"
	"go/ast"
	"go/scanner"
	"go/token"
	"go/types"
	"slices"
	"strconv"
	"strings"
)

// analyze finds the unit's functions to register, in source order.
func analyze(u *unit, pkg string) (Result, error) {
	res := Result{Package: pkg, Functions: []Function{}, Skipped: []Skipped{}}
	var errs scanner.ErrorList
	for _, f := range u.files {
		if f.built {
			errs = append(errs, reservedNames(u.fset, f)...)
		}
		u.collect(f, &res)
	}
	if err := sourceErrors(errs); err != nil {
		return Result{}, err
	}
	if len(res.Functions) == 0 {
		return Result{}, &NoFunctionsError{Skipped: res.Skipped}
	}
	return res, nil
}

// collect adds f's exported top-level functions to res, as registered or skipped.
func (u *unit) collect(f *sourceFile, res *Result) {
	ctx := contextImport(f.ast)
	for _, d := range f.ast.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Recv != nil || !fd.Name.IsExported() {
			continue // methods, unexported functions and other declarations are not registered
		}
		pos := u.fset.Position(fd.Pos())
		if reason := skipReason(fd, f.built); reason != "" {
			res.Skipped = append(res.Skipped, Skipped{Name: fd.Name.Name, Reason: reason, File: pos.Filename, Line: pos.Line})
			continue
		}
		res.Functions = append(res.Functions, describe(fd, ctx, pos))
	}
}

// reservedNames reports top-level declarations of the names the generated
// file declares in the same package (RegisterFunc) or file (workerAlias):
// they would not compile together.
func reservedNames(fset *token.FileSet, f *sourceFile) scanner.ErrorList {
	var errs scanner.ErrorList
	check := func(id *ast.Ident) {
		if id.Name == RegisterFunc || id.Name == workerAlias {
			errs.Add(withColumn(fset.Position(id.Pos()), f.src), fmt.Sprintf("the name %s is reserved for gomap's generated registration code; rename it", id.Name))
		}
	}
	for _, d := range f.ast.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				check(d.Name)
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				for _, id := range specNames(s) {
					check(id)
				}
			}
		}
	}
	return errs
}

func specNames(s ast.Spec) []*ast.Ident {
	switch s := s.(type) {
	case *ast.ValueSpec:
		return s.Names
	case *ast.TypeSpec:
		return []*ast.Ident{s.Name}
	}
	return nil // imports are file-scoped and named by the user
}

// skipReason says why the exported function fd cannot be registered, or ""
// if it can. The shapes accepted are those worker.Reflect accepts, so the
// generated code never panics at registration.
func skipReason(fd *ast.FuncDecl, built bool) string {
	switch {
	case !built:
		return "its file is excluded from the build (build constraints or file name suffix)"
	case fd.Type.TypeParams.NumFields() > 0:
		return "generic functions cannot be registered: each call needs concrete types; register a non-generic wrapper instead"
	}
	if _, _, ok := resultShape(fd.Type.Results); !ok {
		return fmt.Sprintf("it returns %s; gomap registers functions that return nothing, error, one result, or (result, error)",
			resultsText(fd.Type.Results))
	}
	return ""
}

// resultShape reads a result list as nothing, error, R or (R, error); ok is
// false for any other shape. error is recognised by its identifier.
func resultShape(results *ast.FieldList) (result string, hasErr, ok bool) {
	ts := fieldTypes(results)
	switch {
	case len(ts) == 0:
		return "", false, true
	case len(ts) == 1 && isError(ts[0]):
		return "", true, true
	case len(ts) == 1:
		return exprString(ts[0]), false, true
	case len(ts) == 2 && isError(ts[1]):
		return exprString(ts[0]), true, true
	}
	return "", false, false
}

// resultsText writes a result list for a message, as "(int, string)".
func resultsText(results *ast.FieldList) string {
	ts := fieldTypes(results)
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = exprString(t)
	}
	return "(" + strings.Join(out, ", ") + ")"
}

// fieldTypes lists the type of each value a field list declares: "a, b int"
// declares two.
func fieldTypes(fl *ast.FieldList) []ast.Expr {
	if fl == nil {
		return nil
	}
	var out []ast.Expr
	for _, f := range fl.List {
		for range max(1, len(f.Names)) {
			out = append(out, f.Type)
		}
	}
	return out
}

func isError(e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "error"
}

// describe turns a registrable declaration into its Function.
func describe(fd *ast.FuncDecl, ctx contextName, pos token.Position) Function {
	result, hasErr, _ := resultShape(fd.Type.Results)
	fn := Function{
		Name:   fd.Name.Name,
		Params: []Param{},
		Result: result,
		Error:  hasErr,
		Doc:    strings.TrimSpace(fd.Doc.Text()),
		File:   pos.Filename,
		Line:   pos.Line,
	}
	params := params(fd.Type.Params)
	if len(params) > 0 && ctx.is(params[0].typ) {
		// worker.Reflect passes the job's context itself: it is no argument.
		fn.Context = true
		params = params[1:]
	}
	for _, p := range params {
		t := p.typ
		if ell, ok := t.(*ast.Ellipsis); ok {
			fn.Variadic = true
			t = ell.Elt
		}
		fn.Params = append(fn.Params, Param{Name: p.name, Type: exprString(t)})
	}
	return fn
}

type param struct {
	name string
	typ  ast.Expr
}

// params lists a parameter list one parameter at a time.
func params(fl *ast.FieldList) []param {
	var out []param
	for _, f := range fl.List {
		if len(f.Names) == 0 {
			out = append(out, param{typ: f.Type})
		}
		for _, id := range f.Names {
			name := id.Name
			if name == "_" {
				name = "" // a blank name tells a caller nothing
			}
			out = append(out, param{name: name, typ: f.Type})
		}
	}
	return out
}

func exprString(e ast.Expr) string { return types.ExprString(e) }

// contextName is how a file refers to package context: by the names it
// imports it under, or unqualified if it dot-imports it.
type contextName struct {
	names []string
	dot   bool
}

func contextImport(f *ast.File) contextName {
	var c contextName
	for _, imp := range f.Imports {
		if path, err := strconv.Unquote(imp.Path.Value); err != nil || path != "context" {
			continue
		}
		switch {
		case imp.Name == nil:
			c.names = append(c.names, "context")
		case imp.Name.Name == ".":
			c.dot = true
		case imp.Name.Name != "_":
			c.names = append(c.names, imp.Name.Name)
		}
	}
	return c
}

// is reports whether e spells context.Context in the file.
func (c contextName) is(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && e.Sel.Name == "Context" && slices.Contains(c.names, x.Name)
	case *ast.Ident:
		return c.dot && e.Name == "Context"
	}
	return false
}
