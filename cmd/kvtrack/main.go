// Command kvtrack is the operator's tool for kvtrack: it computes vLLM block
// hashes, decodes and watches KV-event streams, tokenizes prompts, and runs
// the demo simulation.
//
// Each subcommand lives in its own file and adds itself to the command table
// with register in an init function.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one kvtrack subcommand.
type command struct {
	name    string
	summary string // one line for the command list
	// run executes the command with the arguments after its name. It returns
	// errUsage (possibly wrapped) for bad usage, after printing help.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("kvtrack: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error caused by how the command was invoked; main exits 2.
var errUsage = errors.New("usage error")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		// "kvtrack help CMD" is "kvtrack CMD --help".
		if len(args) < 2 || args[0] != "help" {
			usage(stdout)
			return 0
		}
		args = []string{args[1], "--help"}
	}
	if args[0] == "--version" {
		args = []string{"version"}
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "kvtrack: unknown command %q (run 'kvtrack --help' for the list)\n", args[0])
		return 2
	}
	err := c.run(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "kvtrack %s: %v\n", c.name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "kvtrack %s: %v\n", c.name, err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "kvtrack: prefix-cache-aware routing for vLLM, from the command line.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: kvtrack <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'kvtrack <command> --help' (or 'kvtrack help <command>') for a command's flags.")
}

// flagSet is a command's flags: errors come back to run (printed once, with
// a hint), --help prints the synopsis and flags on stdout, and deprecated
// aliases warn on stderr.
type flagSet struct {
	*flag.FlagSet
	synopsis       string
	stdout, stderr io.Writer
	aliases        map[string]string // deprecated name -> current name; hidden from --help
}

// newFlagSet returns a command's flag set, headed in --help by synopsis.
func newFlagSet(name, synopsis string, stdout, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), synopsis: synopsis,
		stdout: stdout, stderr: stderr, aliases: map[string]string{}}
	// The flag package would print a parse error and the whole usage itself;
	// parseFlags reports instead, once.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// deprecated registers old as an alias of the flag named current: setting
// it sets current and warns that the name is going away.
func (fs *flagSet) deprecated(old, current string) {
	target := fs.Lookup(current)
	if target == nil {
		panic("kvtrack: alias of an undefined flag: " + current)
	}
	fs.aliases[old] = current
	fs.Var(aliasValue{target: target.Value, warn: func() {
		fmt.Fprintf(fs.stderr, "kvtrack %s: --%s is deprecated; use --%s\n", fs.Name(), old, current)
	}}, old, "deprecated: use --"+current)
}

type aliasValue struct {
	target flag.Value
	warn   func()
}

func (a aliasValue) String() string {
	if a.target == nil {
		return ""
	}
	return a.target.String()
}

func (a aliasValue) Set(s string) error { a.warn(); return a.target.Set(s) }

// set returns the names of the flags given on the command line, a
// deprecated alias counted under its current name.
func (fs *flagSet) set() map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		if current, ok := fs.aliases[f.Name]; ok {
			set[current] = true
			return
		}
		set[f.Name] = true
	})
	return set
}

// printHelp writes the synopsis and the current (non-deprecated) flags.
func (fs *flagSet) printHelp(w io.Writer) {
	fmt.Fprintf(w, "Usage: kvtrack %s\n", fs.synopsis)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		if _, old := fs.aliases[f.Name]; !old {
			n++
		}
	})
	if n == 0 {
		return
	}
	fmt.Fprint(w, "\nFlags:\n")
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	shown.SetOutput(w)
	fs.VisitAll(func(f *flag.Flag) {
		if _, old := fs.aliases[f.Name]; old {
			return
		}
		shown.Var(f.Value, f.Name, f.Usage)
		shown.Lookup(f.Name).DefValue = f.DefValue
	})
	shown.PrintDefaults()
}

// parseFlags parses args into fs. --help prints the help on stdout and
// returns flag.ErrHelp; a bad flag returns errUsage with a one-line hint.
func parseFlags(fs *flagSet, args []string) error {
	if err := fs.parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fs.usageError("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// parse is parseFlags for a command that takes arguments after its flags.
func (fs *flagSet) parse(args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.printHelp(fs.stdout)
			return err
		}
		return fs.usageError("%v", err)
	}
	return nil
}

// usageError is an errUsage naming the problem, with where to find help.
func (fs *flagSet) usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s (run 'kvtrack %s --help' for its flags)", errUsage, fmt.Sprintf(format, args...), fs.Name())
}

// isTerminal reports whether w is a terminal: progress lines redrawn with
// \r belong there, never in files or pipes.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
