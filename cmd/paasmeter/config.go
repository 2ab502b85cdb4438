package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/config"
)

func (a *app) configCmd() *cobra.Command {
	return group("config", "Check the configuration file", "", &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration file and say what is wrong, field by field",
		Long: `Validate the configuration file (--config) after applying the environment
overrides: ` + strings.Join(config.EnvironmentVariables(), ", ") + `.
Exits non-zero and lists every problem with its path in the file.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := a.loadConfig()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s: ok (%d tenants, %d tokens, data in %s)\n", a.configPath, len(c.Tenants), len(c.Tokens), c.Store.DataDir)
			return nil
		},
	})
}
