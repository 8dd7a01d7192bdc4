// Package version tells the version of the running Lattice build.
package version

import "runtime/debug"

// String is the module version the binary was built from, or "dev" for a build from a work tree.
func String() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
