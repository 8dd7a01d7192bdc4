// Package password hashes account passwords the one way every part of Lattice stores them
// (bcrypt), with the rules on their length. It imports no other Lattice package.
package password

import (
	"github.com/matrix-org/gomatrixserverlib/spec"
	"golang.org/x/crypto/bcrypt"
)

// Hash returns the bcrypt hash of password, or M_WEAK_PASSWORD when it is shorter than
// minLength or longer than the 72 bytes bcrypt looks at (refused rather than silently
// truncated).
func Hash(password string, minLength int) (string, error) {
	if len(password) < minLength {
		return "", spec.WeakPassword("password is too short")
	}
	if len(password) > 72 {
		return "", spec.WeakPassword("password is longer than 72 bytes")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	return string(h), err
}
