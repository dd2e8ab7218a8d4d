package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/configs"
)

func newConfigCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print an example config, check one, or reload the daemon's",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "example",
		Short: "Print a commented example config (roles agent-readonly and agent-dev)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := g.out.Write(configs.Example())
			return err
		},
	})
	var output string
	check := &cobra.Command{
		Use:   "check",
		Short: "Load and validate the config; print every problem with file and line",
		Long: `Load and validate the config and print every problem with file, line,
field and fix. Exit 0 when it is valid, 1 otherwise. With -o json the
result is one object: {"path", "ok", "roles"} or {"path", "ok": false,
"problems": [{"file", "line", "column", "field", "message", "hint"}]}.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			return runConfigCheck(g, output)
		},
	}
	check.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.AddCommand(check, newConfigReloadCmd(g))
	return cmd
}

// configCheck is config check's JSON result.
type configCheck struct {
	Path     string          `json:"path"`
	OK       bool            `json:"ok"`
	Roles    []string        `json:"roles,omitempty"`
	Problems []configProblem `json:"problems,omitempty"`
}

type configProblem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

func runConfigCheck(g *globalOpts, output string) error {
	path, err := configs.Find(g.config)
	if err != nil {
		return err
	}
	cfg, err := configs.Load(path)
	if output != "json" {
		if err != nil {
			return err
		}
		fmt.Fprintf(g.out, "%s: ok (roles: %v)\n", path, cfg.RoleNames())
		return nil
	}
	res := configCheck{Path: path, OK: err == nil}
	if err == nil {
		res.Roles = cfg.RoleNames()
	}
	for _, e := range flatten(err) {
		var fe *configs.FieldError
		if errors.As(e, &fe) {
			res.Problems = append(res.Problems, configProblem{File: fe.File, Line: fe.Line, Column: fe.Column, Field: fe.Path, Message: fe.Msg, Hint: fe.Hint})
		} else {
			res.Problems = append(res.Problems, configProblem{Message: e.Error()})
		}
	}
	if perr := printJSON(g.out, res); perr != nil {
		return perr
	}
	return err
}

// flatten lists the errors errors.Join put together (nil: none).
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
