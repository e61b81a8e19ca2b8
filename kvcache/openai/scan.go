package openai

// The scanners below size a JSON array without decoding it, so that a
// request over a limit costs one pass over its bytes. They read JSON that
// json.Unmarshal has already validated.

// scanElements calls at(depth, c) with the first byte c of every array
// element in arr, at any depth (1 for arr's own elements).
func scanElements(arr []byte, at func(depth int, c byte)) {
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
			at(len(stack), c)
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
// byte of its first element (0 when empty).
func arrayShape(arr []byte) (n int, first byte) {
	scanElements(arr, func(depth int, c byte) {
		if depth == 1 {
			if n == 0 {
				first = c
			}
			n++
		}
	})
	return n, first
}

// countNested returns the number of elements of the arrays nested in arr:
// the token IDs of a list of token-ID lists.
func countNested(arr []byte) (n int) {
	scanElements(arr, func(depth int, _ byte) {
		if depth == 2 {
			n++
		}
	})
	return n
}
