package fielderr_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/kvtrack/kvtrack/internal/fielderr"
)

func TestListAndEach(t *testing.T) {
	var l fielderr.List
	if l.Err() != nil {
		t.Fatalf("empty List: Err() = %v, want nil", l.Err())
	}
	l.Add("db", "%d is negative (valid: a database number >= 0)", -1)
	l.Add("tls.enabled", "false while other tls fields are set (fix: set tls.enabled: true)")
	err := l.Err()
	want := "db: -1 is negative (valid: a database number >= 0)\ntls.enabled: false while other tls fields are set (fix: set tls.enabled: true)"
	if err.Error() != want {
		t.Errorf("Err() =\n%s\nwant\n%s", err, want)
	}
	var fe *fielderr.Error
	if !errors.As(err, &fe) || fe.Field != "db" {
		t.Errorf("errors.As found %+v, want the db field", fe)
	}
	var got []string
	fielderr.Each(fmt.Errorf("wrapped: %w", errors.New("plain")), func(field string, err error) { got = append(got, field+"|"+err.Error()) })
	fielderr.Each(err, func(field string, err error) { got = append(got, field+"|"+err.Error()) })
	fielderr.Each(nil, func(string, error) { t.Error("Each(nil) called fn") })
	wantEach := []string{
		"|wrapped: plain",
		"db|-1 is negative (valid: a database number >= 0)",
		"tls.enabled|false while other tls fields are set (fix: set tls.enabled: true)",
	}
	if !reflect.DeepEqual(got, wantEach) {
		t.Errorf("Each visited %q, want %q", got, wantEach)
	}
}
