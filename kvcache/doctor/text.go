package doctor

import (
	"fmt"
	"io"
	"strings"
)

// WriteText writes the report as a checklist: one line per check with its
// status, where and why, and the fix indented below, then a summary line.
func WriteText(w io.Writer, r *Report) error {
	var b strings.Builder
	counts := map[Status]int{}
	for _, c := range r.Checks {
		counts[c.Status]++
		where := c.Pod
		if c.Rank != nil {
			where = fmt.Sprintf("%s r%d", c.Pod, *c.Rank)
		}
		fmt.Fprintf(&b, "%-4s  %-16s %-24s %s\n", strings.ToUpper(string(c.Status)), c.Name, where, c.Reason)
		if c.Fix != "" {
			fmt.Fprintf(&b, "%48s fix: %s\n", "", c.Fix)
		}
	}
	verdict := "everything passed"
	if !r.Passed {
		verdict = "precise prefix routing will not work as configured until the failures above are fixed"
		if counts[Fail] == 0 {
			verdict = "no failures, but the warnings above need a look"
		}
	}
	fmt.Fprintf(&b, "\n%d passed, %d warned, %d failed in %s: %s\n", counts[Pass], counts[Warn], counts[Fail], r.Elapsed, verdict)
	_, err := io.WriteString(w, b.String())
	return err
}
