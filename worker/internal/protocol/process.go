package protocol

// Process is the JSON record of one worker process in the Processes hash. It
// tells clients which queues and functions are served, and tells the reaper
// which keys to recover when the process dies.
type Process struct {
	ID          string   `json:"id"` // "host:pid", the field name in the hash
	Host        string   `json:"host"`
	PID         int      `json:"pid"`
	Queues      []string `json:"queues"`    // queues it takes jobs from
	Functions   []string `json:"functions"` // registered function names
	Slots       []string `json:"slots"`     // its Resque worker ids, one per concurrent job
	Concurrency int      `json:"concurrency"`
	Started     string   `json:"started"` // RFC 3339
	Version     int      `json:"version"` // protocol version
}
