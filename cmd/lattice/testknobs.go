package main

import (
	"os"
	"strconv"
	"time"
)

// Hidden knobs read from the environment, for the end-to-end tests only: they slow down or
// reshape background work so that a test can observe it midway. Unset, they are 0.

// envInt returns the integer in the environment variable name, or 0.
func envInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}

// envDuration returns the duration (as time.ParseDuration reads it) in the environment
// variable name, or 0.
func envDuration(name string) time.Duration {
	d, _ := time.ParseDuration(os.Getenv(name))
	return d
}
