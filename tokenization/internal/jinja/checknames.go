package jinja

// checkNames reports unknown filters and tests the way Jinja2's compiler
// does: at compile time, except inside {% if %} tests and bodies and
// inline if-expressions ("soft" frames), where the error waits until the
// filter is actually called. Loops, macros, call, filter and set blocks
// open frames that are not soft again.
func checkNames(body []node, soft bool) error {
	for _, n := range body {
		var err error
		switch x := n.(type) {
		case *outputNode:
			err = checkExpr(x.expr, soft)
		case *ifNode:
			for _, c := range x.conds {
				if err = checkExpr(c, true); err != nil {
					return err
				}
			}
			for _, b := range x.bodies {
				if err = checkNames(b, true); err != nil {
					return err
				}
			}
		case *forNode:
			if err = checkExpr(x.iter, soft); err == nil {
				if err = checkExpr(x.filter, false); err == nil {
					if err = checkNames(x.body, false); err == nil {
						err = checkNames(x.els, false)
					}
				}
			}
		case *setNode:
			if x.value != nil {
				err = checkExpr(x.value, soft)
			} else if err = checkFilters(x.filters, false); err == nil {
				err = checkNames(x.body, false)
			}
		case *macroNode:
			err = checkMacro(x.defs, x.body)
		case *callBlockNode:
			if err = checkExpr(x.call, soft); err == nil {
				err = checkMacro(x.defs, x.body)
			}
		case *filterBlockNode:
			if err = checkFilters(x.filters, soft); err == nil {
				err = checkNames(x.body, false)
			}
		case *generationNode:
			err = checkNames(x.body, false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func checkMacro(defs []expr, body []node) error {
	for _, d := range defs {
		if err := checkExpr(d, false); err != nil {
			return err
		}
	}
	return checkNames(body, false)
}

func checkFilters(fs []*filterExpr, soft bool) error {
	for _, f := range fs {
		if err := checkExpr(f, soft); err != nil {
			return err
		}
	}
	return nil
}

func checkExprs(es []expr, soft bool) error {
	for _, e := range es {
		if err := checkExpr(e, soft); err != nil {
			return err
		}
	}
	return nil
}

func checkExpr(e expr, soft bool) error {
	switch x := e.(type) {
	case nil:
		return nil
	case *filterExpr:
		if _, ok := filters[x.name]; !ok && !soft {
			return &SyntaxError{Line: x.line(), Msg: "no filter named '" + x.name + "'"}
		}
		if x.arg != nil {
			if err := checkExpr(x.arg, soft); err != nil {
				return err
			}
		}
		if err := checkExprs(x.args, soft); err != nil {
			return err
		}
		return checkExprs(x.kwVals, soft)
	case *testExpr:
		if _, ok := tests[x.name]; !ok && !soft {
			return &SyntaxError{Line: x.line(), Msg: "no test named '" + x.name + "'"}
		}
		if err := checkExpr(x.arg, soft); err != nil {
			return err
		}
		return checkExprs(x.args, soft)
	case *condExpr:
		return checkExprs([]expr{x.cond, x.yes, x.no}, true)
	case *listExpr:
		return checkExprs(x.items, soft)
	case *dictExpr:
		if err := checkExprs(x.keys, soft); err != nil {
			return err
		}
		return checkExprs(x.vals, soft)
	case *attrExpr:
		return checkExpr(x.obj, soft)
	case *itemExpr:
		return checkExprs([]expr{x.obj, x.key}, soft)
	case *sliceExpr:
		return checkExprs([]expr{x.obj, x.start, x.stop, x.step}, soft)
	case *callExpr:
		if err := checkExpr(x.fn, soft); err != nil {
			return err
		}
		if err := checkExprs(x.args, soft); err != nil {
			return err
		}
		return checkExprs(x.kwVals, soft)
	case *unaryExpr:
		return checkExpr(x.x, soft)
	case *binExpr:
		return checkExprs([]expr{x.l, x.r}, soft)
	case *compareExpr:
		if err := checkExpr(x.first, soft); err != nil {
			return err
		}
		return checkExprs(x.rest, soft)
	}
	return nil
}
