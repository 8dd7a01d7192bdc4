package roomserver

import (
	"fmt"

	"github.com/matrix-org/gomatrixserverlib/spec"
)

// maxSafeInteger is 2^53-1, the largest integer canonical JSON allows (appendices.md,
// "Canonical JSON": "numbers ... MUST be integers in the range [-(2**53)+1, (2**53)-1]").
const maxSafeInteger = 1<<53 - 1

// checkCanonicalNumbers refuses, with M_BAD_JSON, event content that canonical JSON cannot
// represent: numbers with a fraction or an exponent, negative zero, and integers outside
// ±(2^53-1). Canonical JSON forbids them in every room version; gomatrixserverlib enforces
// this only from room version 6 and reports it as an internal error, so a client's mistake
// would be a 500. raw must be valid JSON (the HTTP layer checks that first).
func checkCanonicalNumbers(raw []byte) error {
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case inString:
			if c == '\\' {
				i++ // skip the escaped character
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for j < len(raw) && isNumberByte(raw[j]) {
				j++
			}
			if err := checkInteger(raw[i:j]); err != nil {
				return err
			}
			i = j - 1
		}
	}
	return nil
}

func isNumberByte(c byte) bool {
	return c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' || (c >= '0' && c <= '9')
}

// checkInteger accepts the canonical form of a safe integer: -?(0|[1-9][0-9]*), not -0.
func checkInteger(num []byte) error {
	digits := num
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	var v uint64
	for _, d := range digits {
		if d < '0' || d > '9' {
			return spec.BadJSON(fmt.Sprintf("event content has the number %.40s: canonical JSON allows integers only", num))
		}
		if v > maxSafeInteger {
			break
		}
		v = v*10 + uint64(d-'0')
	}
	switch {
	case len(digits) == 0:
		return spec.BadJSON("event content has an invalid number")
	case v > maxSafeInteger:
		return spec.BadJSON(fmt.Sprintf("event content has the integer %.40s, outside ±(2^53-1)", num))
	case len(num) != len(digits) && v == 0:
		return spec.BadJSON("event content has -0, which canonical JSON does not allow")
	}
	return nil
}
