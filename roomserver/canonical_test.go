package roomserver

import (
	"errors"
	"strings"
	"testing"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

func TestCheckCanonicalNumbers(t *testing.T) {
	for _, ok := range []string{
		`{}`, `{"n":0}`, `{"n":-1}`, `{"n":9007199254740991}`, `{"n":-9007199254740991}`,
		`{"s":"1.5e3 -0 \"9007199254740992\""}`, `{"a":[1,2,{"b":-3}],"t":true,"f":null}`,
		`{"k\"1.5":1}`, `{"s":"\\"}`,
	} {
		if err := checkCanonicalNumbers([]byte(ok)); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		`{"n":1.5}`, `{"n":1e2}`, `{"n":1E400}`, `{"n":-0}`, `{"n":0.0}`, `{"n":9007199254740992}`,
		`{"n":-9007199254740992}`, `{"n":[1,{"m":2.25}]}`, `{"n":123456789012345678901234567890}`,
		`{"s":"\\","n":1.5}`,
	} {
		err := checkCanonicalNumbers([]byte(bad))
		var me spec.MatrixError
		if !errors.As(err, &me) || me.ErrCode != spec.ErrorBadJSON {
			t.Errorf("%s: got %v, want M_BAD_JSON", bad, err)
		}
	}
	if err := checkCanonicalNumbers([]byte(`{"n":` + strings.Repeat("9", 5000) + `}`)); err == nil {
		t.Error("a 5000-digit integer was accepted")
	}
}
