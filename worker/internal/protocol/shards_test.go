package protocol

import (
	"slices"
	"testing"
)

func TestSlotIsRedisClusterKeyslot(t *testing.T) {
	// Values from CLUSTER KEYSLOT (and redis-py's key_slot).
	for key, want := range map[string]int{"123456789": 12739, "goworker:queue:sampleadd": 3756,
		"{user1000}.following": Slot("user1000"), "foo{}{bar}": Slot("foo{}{bar}"), "": 0} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if Slot("foo{}{bar}") == Slot("bar") {
		t.Error("an empty hash tag must not count")
	}
}

func TestShardsCoverTheSlotRanges(t *testing.T) {
	k := NewKeys("")
	for _, n := range []int{1, 2, 3, 5, 16} {
		names := k.Shards("sampleadd", n)
		if len(names) != n || !slices.Contains(names, "sampleadd") {
			t.Fatalf("Shards(sampleadd, %d) = %v", n, names)
		}
		for j, name := range names {
			if r := Slot(k.Queue(name)) * n / SlotCount; r != j {
				t.Errorf("n=%d: shard %d %q is in range %d", n, j, name, r)
			}
		}
	}
	// The same names as gomap/_protocol.py's shard_names (tests/test_client.py pins them too).
	for _, c := range []struct {
		ns, q string
		n     int
		want  []string
	}{
		{"", "sampleadd", 3, []string{"sampleadd", "sampleadd~1", "sampleadd~3"}},
		{"", "samplesleep", 4, []string{"samplesleep~3", "samplesleep~2", "samplesleep", "samplesleep~4"}},
		{"resque", "mail", 2, []string{"mail~2", "mail"}},
	} {
		if got := NewKeys(c.ns).Shards(c.q, c.n); !slices.Equal(got, c.want) {
			t.Errorf("Shards(%q, %d) in %q = %v, want %v", c.q, c.n, c.ns, got, c.want)
		}
	}
	if got := k.Shards("q", 0); !slices.Equal(got, []string{"q"}) {
		t.Errorf("Shards(q, 0) = %v", got)
	}
	if got := len(k.Shards("q", 1000)); got != MaxShards {
		t.Errorf("Shards(q, 1000) has %d names, want %d", got, MaxShards)
	}
}
