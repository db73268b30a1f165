package protocol

// Process is the JSON record of one worker process in the Processes hash. It
// tells clients which queues and functions are served, and tells the reaper
// which keys to recover when the process dies.
type Process struct {
	ID          string               `json:"id"` // "host:pid", the field name in the hash
	Host        string               `json:"host"`
	PID         int                  `json:"pid"`
	Queues      []string             `json:"queues"`               // queues it takes jobs from
	Functions   []string             `json:"functions"`            // registered function names
	Signatures  map[string]Signature `json:"signatures,omitempty"` // function name → its signature, for the functions that describe one
	Slots       []string             `json:"slots"`                // its Resque worker ids, one per concurrent job
	Concurrency int                  `json:"concurrency"`          // slots: jobs it runs at once
	Cores       int                  `json:"cores"`                // GOMAXPROCS: goroutines a chunk's items run on; 0 (absent) in records of older workers
	MaxPayload  int                  `json:"max_payload"`          // the largest payload in bytes it takes; 0 (absent) in records of older workers
	MaxItems    int                  `json:"max_chunk_items"`      // the most items a chunk may have; 0 (absent) in records of older workers
	Started     string               `json:"started"`              // RFC 3339
	Paused      []string             `json:"paused,omitempty"`     // paused queues it has stopped taking jobs from
	Shards      int                  `json:"shards,omitempty"`     // shards of each queue it serves (absent: 1)
	Version     int                  `json:"version"`              // protocol version
}

// Signature describes a registered function to clients, as its worker
// advertises it in the "signatures" field of its record: the Go types (and,
// where the source gave them, names) of its parameters and its result. The
// bools are omitzero: the JSON v2 encoder's omitempty would keep false.
type Signature struct {
	Params   []Param `json:"params"`            // the arguments of one call, in order
	Variadic bool    `json:"variadic,omitzero"` // the last parameter takes any number of arguments
	Result   string  `json:"result,omitempty"`  // the result's Go type; "" when it returns only an error or nothing
	Error    bool    `json:"error,omitzero"`    // it also returns an error
	Doc      string  `json:"doc,omitempty"`     // its doc comment
}

// Param is one parameter of a Signature.
type Param struct {
	Name string `json:"name,omitempty"` // as the source names it; "" when unknown
	Type string `json:"type"`           // the Go type, as the source writes it (e.g. "float64", "[]string", "Point")
}
