// Command simulate is the smallest use of the simulation in internal/sim:
// it runs the default comparison and prints its table. The full tool, with
// every setting as a flag, the evidence matrix and the chart, is
// `kvtrack simulate` (`make demo`); README.md beside this file explains the
// model and shows the results.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/kvtrack/kvtrack/internal/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := sim.Run(ctx, sim.DefaultConfig(), nil)
	if err == nil {
		err = rep.WriteTable(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "simulate:", err)
		os.Exit(1)
	}
}
