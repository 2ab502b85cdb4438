package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/collector/auth"
)

func (a *app) tokenCmd() *cobra.Command {
	return group("token", "Create bearer tokens and the hashes the configuration holds",
		`The configuration file holds only the SHA-256 of each bearer token, so a leaked
file grants nothing. Give the token itself to the agent, institution or operator.`,
		&cobra.Command{
			Use:   "new",
			Short: "Print a new random token and its sha256 for the configuration",
			Args:  cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				t := auth.New()
				fmt.Fprintf(a.stdout, "token:  %s\nsha256: %s\n", t, auth.Hash(t))
				return nil
			},
		},
		&cobra.Command{
			Use:   "hash",
			Short: "Print the sha256 of a token read from standard input",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				line = strings.TrimSpace(line)
				if line == "" {
					return errors.Join(errors.New("no token on standard input"), err)
				}
				fmt.Fprintln(a.stdout, auth.Hash(line))
				return nil
			},
		})
}
