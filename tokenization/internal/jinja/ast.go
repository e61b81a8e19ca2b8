package jinja

// Statements.
type (
	node interface{ line() int }

	// pos carries a node's source line for error messages.
	pos struct{ ln int }

	dataNode struct {
		pos
		text string
	}
	outputNode struct {
		pos
		expr expr
	}
	ifNode struct {
		pos
		conds  []expr
		bodies [][]node // len(bodies) == len(conds) or +1 for else
	}
	forNode struct {
		pos
		targets []string // one name, or several to unpack
		iter    expr
		filter  expr // for ... if filter
		body    []node
		els     []node
	}
	setNode struct {
		pos
		targets []string // names to assign (unpacking when several)
		attrOf  string   // namespace name for "set ns.attr = ..."
		attr    string
		value   expr   // nil for a block set
		body    []node // block set
		filters []*filterExpr
	}
	macroNode struct {
		pos
		name   string
		params []string
		defs   []expr // defaults, aligned to the end of params
		body   []node
	}
	callBlockNode struct {
		pos
		params []string
		defs   []expr
		call   *callExpr
		body   []node
	}
	filterBlockNode struct {
		pos
		filters []*filterExpr
		body    []node
	}
	loopControlNode struct {
		pos
		brk bool
	}
	// generationNode is transformers' {% generation %} block, which marks
	// assistant text and renders its body unchanged.
	generationNode struct {
		pos
		body []node
	}
)

// Expressions.
type (
	expr interface{ line() int }

	constExpr struct {
		pos
		val any
	}
	nameExpr struct {
		pos
		name string
	}
	listExpr struct {
		pos
		items []expr
		tuple bool
	}
	dictExpr struct {
		pos
		keys, vals []expr
	}
	attrExpr struct {
		pos
		obj  expr
		name string
	}
	itemExpr struct {
		pos
		obj, key expr
	}
	sliceExpr struct {
		pos
		obj               expr
		start, stop, step expr // nil when absent
	}
	callExpr struct {
		pos
		fn      expr
		args    []expr
		kwNames []string
		kwVals  []expr
	}
	filterExpr struct {
		pos
		arg     expr // nil inside a filter block
		name    string
		args    []expr
		kwNames []string
		kwVals  []expr
	}
	testExpr struct {
		pos
		arg  expr
		name string
		args []expr
		neg  bool
	}
	unaryExpr struct {
		pos
		op string // "not", "-", "+"
		x  expr
	}
	binExpr struct {
		pos
		op   string // or and + - * / // % ** ~
		l, r expr
	}
	compareExpr struct {
		pos
		first expr
		ops   []string // == != < <= > >= in notin
		rest  []expr
	}
	condExpr struct {
		pos
		cond, yes, no expr // no may be nil: undefined
	}
)

func (p pos) line() int { return p.ln }
