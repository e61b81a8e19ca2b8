package redis

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

// FuzzWriteLogOp feeds Score's reading of the write log (applyLog) any
// bytes as an op: anything with access to the server can write to the
// log. It must not panic, must ignore what is not a well-formed add, and
// must give each prompt key one record per time a well-formed add names
// it.
func FuzzWriteLogOp(f *testing.F) {
	keys := []kvblock.Key{1, 2, 1 << 63, 2} // a key twice: both places count
	op := func(ks ...kvblock.Key) []byte {
		b := []byte{logAdd, 0, 0, 7, 1}
		for _, k := range ks {
			b = binary.BigEndian.AppendUint64(b, uint64(k))
		}
		for range ks {
			b = append(b, 0, 0, 0, 9)
		}
		return b
	}
	f.Add(op(1, 2))
	f.Add(op(1<<63, 5, 2))
	f.Add([]byte{})
	f.Add([]byte("a\x00\x00\x01\x01short"))
	f.Add(append([]byte{'z'}, op(1)[1:]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc := &scoreScratch{vals: make([]string, len(keys))}
		sc.applyLog(keys, []string{string(b)})
		s := string(b)
		for i, k := range keys {
			want := 0
			if wellFormed(s) {
				n := (len(s) - 5) / 12
				for j := range n {
					if kvblock.Key(be64(s[5+8*j:])) == k {
						want++
					}
				}
			}
			if got := len(sc.vals[i]) / recordSize; got != want || len(sc.vals[i])%recordSize != 0 {
				t.Fatalf("key %d got %d bytes of records, want %d records", i, len(sc.vals[i]), want)
			}
			if want > 0 && !strings.HasPrefix(sc.vals[i], s[1:5]) {
				t.Fatalf("key %d's record %x does not name the op's pod and tier %x", i, sc.vals[i][:5], s[1:5])
			}
		}
	})
}
