package openai

import (
	"bytes"
	"encoding/json"
)

// The scanners below size a JSON array without decoding it, so that a
// request over a limit costs at most one pass over its bytes, and stops
// once the limit is passed. They run before the body is validated: on
// bytes that are not JSON they give some answer, never a panic, and the
// validating pass that follows rejects the body.

// scanElements calls at(depth, c) with the first byte c of every array
// element in arr, at any depth (1 for arr's own elements), until at
// returns false.
func scanElements(arr []byte, at func(depth int, c byte) bool) {
	var stack []byte // '[' or '{' per open container
	expect := false  // the next value starts an element of the innermost array
	inStr, esc := false, false
	for _, c := range arr {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r', ':':
			continue
		case ']', '}':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			expect = false
			continue
		case ',':
			expect = len(stack) > 0 && stack[len(stack)-1] == '['
			continue
		}
		if expect {
			if !at(len(stack), c) {
				return
			}
			expect = false
		}
		switch c {
		case '"':
			inStr = true
		case '[':
			stack = append(stack, '[')
			expect = true
		case '{':
			stack = append(stack, '{')
		}
	}
}

// arrayShape returns the number of elements of the array arr and the first
// byte of its first element (0 when empty). With upTo > 0 it stops counting
// at upTo+1: enough to know the array is over a limit of upTo.
func arrayShape(arr []byte, upTo int) (n int, first byte) {
	scanElements(arr, func(depth int, c byte) bool {
		if depth == 1 {
			if n == 0 {
				first = c
			}
			n++
		}
		return upTo <= 0 || n <= upTo
	})
	return n, first
}

// countNested returns the number of elements of the arrays nested in arr
// (the token IDs of a list of token-ID lists), stopping at upTo+1 as
// arrayShape does.
func countNested(arr []byte, upTo int) (n int) {
	scanElements(arr, func(depth int, _ byte) bool {
		if depth == 2 {
			n++
		}
		return upTo <= 0 || n <= upTo
	})
	return n
}

// topLevel returns the members of the JSON object obj as subslices of it
// (no copies: a 15 MiB prompt is not duplicated to be looked at), the last
// of a repeated key winning as in Python's json. ok is false when obj is
// not an object. Keys with escapes are unescaped. obj need not be valid
// JSON: what topLevel makes of invalid bytes is only read to find a limit
// already passed, before json.Valid rejects them.
func topLevel(obj []byte) (fields map[string][]byte, ok bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	fields = map[string][]byte{}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] == '}' {
			return fields, true
		}
		if obj[i] == ',' {
			i++
			continue
		}
		if obj[i] != '"' {
			return nil, false // not JSON: json.Valid says so next
		}
		end := stringEnd(obj, i)
		if end-1 < i+1 {
			return nil, false // an unterminated key
		}
		key := string(obj[i+1 : end-1])
		if bytes.IndexByte(obj[i:end], '\\') >= 0 {
			_ = json.Unmarshal(obj[i:end], &key)
		}
		i = skipSpace(obj, end)
		i = skipSpace(obj, i+1) // the colon
		if i >= len(obj) {
			return nil, false // truncated after a key
		}
		vend := valueEnd(obj, i)
		fields[key] = obj[i:vend]
		i = vend
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string starting at b[i] == '"'.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// valueEnd returns the index after the value starting at b[i].
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = stringEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}
