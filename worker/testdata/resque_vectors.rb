# Prints the Resque payloads Ruby writes for the cases of resque-vectors.json:
# Resque.enqueue pushes Resque.encode(class: klass.to_s, args: args), and
# Resque.encode is MultiJson.dump, which is JSON.generate with the json gem.
# The Go and Python tests build the same arguments natively and must produce
# these exact bytes; with ruby on PATH, the Go test reruns this script.
require 'json'

cases = {
  'ints'    => ['Archive', [35, 'tar']],
  'empty'   => ['Ping', []],
  'strings' => ['Echo', ['a/b', '<&>', "\u2028", "\x1f\n\t\"\\"]],
  'floats'  => ['Add', [1.0, 1.5, -0.0, 2.5e-05, 0.1, 123456.789]],
  'nested'  => ['Store', [{ 'a' => 1, 'b' => [2, 3] }, [true, false, nil]]],
  'bigint'  => ['Big', [9007199254740993, -9223372036854775808]],
  'unicode' => ['Say', ['日本語', 'é 🎉']],
}
out = cases.transform_values { |klass, args| JSON.generate({ class: klass, args: args }) }
puts JSON.pretty_generate(out)
