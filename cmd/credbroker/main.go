//go:build !gendocs

// Command credbroker is the local credential broker for AI coding agents.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
