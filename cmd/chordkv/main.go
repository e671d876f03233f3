// Command chordkv runs and talks to chordkv nodes; see internal/cli.
package main

import (
	"os"

	"github.com/chordkv/chordkv/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
