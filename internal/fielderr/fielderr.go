// Package fielderr is the error the option validators below kvcache return
// (redis.Config's, for one), so that kvcache can report them in its own
// style, as a *kvcache.FieldError under the section's path.
//
// An Error names a field by its path within the validator's own options,
// in the json spelling ("tls.enabled"), and says what is wrong in
// kvcache's words: the value, the problem, and "(valid: ...)". kvcache
// prefixes the section ("redis.tls.enabled"); a caller of the lower
// package alone reads the field relative to the struct it passed.
package fielderr

import (
	"errors"
	"fmt"
)

// Error is one invalid field.
type Error struct {
	Field string // path within the validated options, e.g. "tls.enabled"
	Err   error  // what is wrong, and what is valid
}

func (e *Error) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// List collects the invalid fields of one validation. Its zero value is
// empty and ready to use.
type List struct{ errs []error }

// Add records that field is invalid, formatting the reason.
func (l *List) Add(field, format string, args ...any) {
	l.errs = append(l.errs, &Error{Field: field, Err: fmt.Errorf(format, args...)})
}

// Err returns the collected errors joined with errors.Join, or nil.
func (l *List) Err() error { return errors.Join(l.errs...) }

// Each calls fn for every field error in err, a single *Error or a tree
// joined with errors.Join, in order. Any other error is passed with an
// empty field.
func Each(err error, fn func(field string, err error)) {
	if err == nil {
		return
	}
	if e, ok := err.(*Error); ok {
		fn(e.Field, e.Err)
		return
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			Each(e, fn)
		}
		return
	}
	fn("", err)
}
