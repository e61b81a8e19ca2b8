package kvevents

import "github.com/kvtrack/kvtrack/internal/mpread"

// Layout is the msgpack shape of one batch. Decode hides it (every layout
// decodes to the same Batch); diagnostics read it because it dates the
// publisher: vLLM appended event fields release by release and switched
// events from positional arrays to maps in v0.24.
type Layout struct {
	// BatchMap is true when the EventBatch itself is a map (seen only in
	// unreleased vLLM revisions); vLLM sends a positional array.
	BatchMap bool
	// BatchFields is the EventBatch's element (or entry) count: 2 for vLLM
	// v0.9.0 [ts, events], 3 since v0.9.1 [ts, events, data_parallel_rank].
	BatchFields int
	// Stored and Removed describe the batch's first BlockStored and first
	// BlockRemoved; Fields is 0 when the batch has none of that kind.
	Stored, Removed EventLayout
}

// EventLayout is the shape of one event.
type EventLayout struct {
	// Map is true for vLLM v0.24+ map events ({"type": ..., ...}), false for
	// the positional arrays of earlier versions and of SGLang.
	Map bool
	// Fields counts the array's elements or the map's entries, the tag
	// included. Arrays always carry every field of their version (12 for
	// BlockStored in vLLM v0.23); maps omit fields left at their default.
	Fields int
	// Keys lists a map event's keys in wire order (nil for arrays).
	Keys []string
}

// Layout reports the shape of a batch payload without decoding its values.
// It is a diagnostic, not for the hot path: it allocates the map keys it
// returns. Like Decode it uses d's buffers and must not run concurrently
// with d's other methods. An error wraps ErrMalformed.
func (d *Decoder) Layout(payload []byte) (Layout, error) {
	d.r.Reset(payload)
	var l Layout
	c, err := d.r.Peek()
	if err != nil {
		return l, structural("batch", err)
	}
	switch {
	case mpread.TypeOf(c) == mpread.Array:
		if l.BatchFields, err = d.arrayLen(); err != nil {
			return l, structural("batch", err)
		}
		for i := range l.BatchFields {
			if i == 1 {
				err = d.eventsLayout(&l)
			} else {
				err = d.r.Skip()
			}
			if err != nil {
				return l, structural("batch", err)
			}
		}
	case mpread.TypeOf(c) == mpread.Map:
		l.BatchMap = true
		if l.BatchFields, err = d.mapLen(); err != nil {
			return l, structural("batch", err)
		}
		for range l.BatchFields {
			key, ok, err := d.mapKey()
			if err == nil {
				if ok && string(key) == "events" {
					err = d.eventsLayout(&l)
				} else {
					err = d.r.Skip()
				}
			}
			if err != nil {
				return l, structural("batch", err)
			}
		}
	default:
		return l, malformed("batch is msgpack code %#x, want an array or a map", c)
	}
	return l, nil
}

func (d *Decoder) eventsLayout(l *Layout) error {
	c, err := d.r.Peek()
	if err != nil {
		return err
	}
	if mpread.TypeOf(c) != mpread.Array {
		return d.r.Skip()
	}
	n, err := d.arrayLen()
	if err != nil {
		return err
	}
	for range n {
		var ev EventLayout
		kind := KindUnknown
		c, err := d.r.Peek()
		if err != nil {
			return err
		}
		switch {
		case mpread.TypeOf(c) == mpread.Array:
			if ev.Fields, err = d.arrayLen(); err != nil {
				return err
			}
			for i := range ev.Fields {
				if i == 0 {
					kind, err = d.tag()
				} else {
					err = d.r.Skip()
				}
				if err != nil {
					return err
				}
			}
		case mpread.TypeOf(c) == mpread.Map:
			ev.Map = true
			if ev.Fields, err = d.mapLen(); err != nil {
				return err
			}
			for range ev.Fields {
				key, ok, err := d.mapKey()
				if err != nil {
					return err
				}
				if ok && string(key) == "type" {
					kind, err = d.tag()
				} else {
					err = d.r.Skip()
				}
				if err != nil {
					return err
				}
				if ok {
					ev.Keys = append(ev.Keys, string(key))
				}
			}
		default:
			if err := d.r.Skip(); err != nil {
				return err
			}
		}
		switch {
		case kind == BlockStored && l.Stored.Fields == 0:
			l.Stored = ev
		case kind == BlockRemoved && l.Removed.Fields == 0:
			l.Removed = ev
		}
	}
	return nil
}
