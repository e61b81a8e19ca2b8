package jinja

// LoopsOverContent reports whether the template iterates over a message's
// content: vLLM's test for templates that want OpenAI-style content part
// lists ("openai" content format) rather than strings. It follows vLLM's
// AST heuristic: names bound to messages (directly or through slices,
// filters and tests, also via {% set %} aliases) are loop sources, their
// loop variables are messages, and a loop over message.content or
// message['content'] means "openai". Like vLLM, an alias or loop target
// that is not a plain name makes the answer "string" (false).
func (t *Template) LoopsOverContent() bool {
	var assigns []*setNode
	var loops []*forNode
	walk(t.body, func(n node) {
		switch x := n.(type) {
		case *setNode:
			if x.value != nil {
				assigns = append(assigns, x)
			}
		case *forNode:
			loops = append(loops, x)
		}
	})
	// Names standing for the messages list, breadth first.
	msgVars := []string{"messages"}
	for i := 0; i < len(msgVars); i++ {
		for _, a := range assigns {
			if !accessesVar(a.value, msgVars[i], "") {
				continue
			}
			if a.attrOf != "" || len(a.targets) != 1 {
				return false // vLLM's assertion fails: it falls back to "string"
			}
			if name := a.targets[0]; !contains(msgVars, name) {
				msgVars = append(msgVars, name)
			}
		}
	}
	var itemVars []string
	for _, l := range loops {
		for _, v := range msgVars {
			if accessesVar(l.iter, v, "") {
				if len(l.targets) != 1 {
					return false
				}
				itemVars = append(itemVars, l.targets[0])
				break
			}
		}
	}
	for _, l := range loops {
		for _, v := range itemVars {
			if accessesVar(l.iter, v, "content") {
				return len(l.targets) == 1
			}
		}
	}
	return false
}

// accessesVar reports whether e is the variable name (or name.key /
// name['key'] when key is set), possibly sliced, filtered or tested.
func accessesVar(e expr, name, key string) bool {
	switch x := e.(type) {
	case *filterExpr:
		return x.arg != nil && accessesVar(x.arg, name, key)
	case *testExpr:
		return accessesVar(x.arg, name, key)
	case *sliceExpr:
		return accessesVar(x.obj, name, key)
	}
	if key == "" {
		n, ok := e.(*nameExpr)
		return ok && n.name == name
	}
	switch x := e.(type) {
	case *attrExpr:
		n, ok := x.obj.(*nameExpr)
		return ok && n.name == name && x.name == key
	case *itemExpr:
		n, ok := x.obj.(*nameExpr)
		c, isConst := x.key.(*constExpr)
		return ok && isConst && n.name == name && c.val == key
	}
	return false
}

// walk visits statements in document order, parents before children.
func walk(body []node, visit func(node)) {
	for _, n := range body {
		visit(n)
		switch x := n.(type) {
		case *ifNode:
			for _, b := range x.bodies {
				walk(b, visit)
			}
		case *forNode:
			walk(x.body, visit)
			walk(x.els, visit)
		case *setNode:
			walk(x.body, visit)
		case *macroNode:
			walk(x.body, visit)
		case *callBlockNode:
			walk(x.body, visit)
		case *filterBlockNode:
			walk(x.body, visit)
		case *generationNode:
			walk(x.body, visit)
		}
	}
}
