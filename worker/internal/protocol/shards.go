package protocol

import (
	"strconv"
	"strings"
)

// Sharded queues (docs/protocol.md, "Sharded queues"). On a Redis Cluster a
// queue is one list on one master; a hot function's queue can be spread over
// n shards, lists whose keys fall in different parts of the slot space, so
// that the masters share its traffic. Shard names are ordinary Resque queue
// names: the base name q itself, and q~k for k = 1, 2, ….

// SlotCount is the number of hash slots of a Redis Cluster.
const SlotCount = 16384

// Slot is the cluster hash slot of key: CRC16 (XMODEM) of the key, or of its
// hash tag (the text between the first "{" and the next "}", when not
// empty), modulo SlotCount.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % SlotCount
}

// MaxShards is the most shards a queue may have.
const MaxShards = 64

// ShardSuffix separates a queue's name from a shard's number.
const ShardSuffix = "~"

// Shards returns the names of queue q's n shards (n < 1 counts as 1, more
// than MaxShards as MaxShards). The slot space is cut into n equal ranges,
// range j holding slots [j*16384/n, (j+1)*16384/n). q itself is the shard of
// the range its key's slot is in; each other range's shard is the first name
// q~k (k = 1, 2, …) whose key's slot is in it. The names come in range order.
// On a cluster whose masters split the slots evenly (as redis-cli --cluster
// create does) with n masters, each shard lives on a master of its own.
func (k Keys) Shards(q string, n int) []string {
	n = min(max(n, 1), MaxShards)
	names := make([]string, n)
	rangeOf := func(name string) int { return Slot(k.Queue(name)) * n / SlotCount }
	names[rangeOf(q)] = q
	left := n - 1
	for i := 1; left > 0; i++ {
		name := q + ShardSuffix + strconv.Itoa(i)
		if r := rangeOf(name); names[r] == "" {
			names[r] = name
			left--
		}
	}
	return names
}
