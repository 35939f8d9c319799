package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// A command is one qbench command: its help text and its flags. Every
// command parses the same way (command.parse): --help or -h prints the
// command's own help on stdout and exits 0; an unknown flag or a bad
// value is one line on stderr and exit status 2, before any work starts.
type command struct {
	name     string // as typed: "qbench", "qbench compare", "qbench stream stat"
	synopsis string // what follows the name on the usage line
	about    string // one paragraph: what the command does
	more     string // optional text after the flags (grammar, examples)
	opts     commandOptions
	// operands is the number of operands wanted, or -1 for any.
	operands int
}

// commandOptions are one command's flags, kept in one struct per
// command. register defines each flag on fs with its one-line help (one
// fs.XxxVar line per flag); validate checks the parsed values, and the
// combinations, before any work starts. given reports which flags were
// on the command line, for defaults that depend on other flags.
type commandOptions interface {
	register(fs *flag.FlagSet)
	validate(given flagsGiven) error
}

// flagsGiven is the set of flags given on the command line, by name.
type flagsGiven map[string]bool

// exitUsage is the exit status of a usage error.
const exitUsage = 2

// parse parses args: flags may stand before or among the operands ("-"
// is an operand, "--" ends the flags). done is true when the caller
// should return code at once: help was printed, or a usage error was.
func (c *command) parse(args []string, stdout, stderr io.Writer) (operands []string, done bool, code int) {
	fs := c.flagSet()
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.help(stdout)
				return nil, true, 0
			}
			return nil, true, c.usageError(stderr, dashes(err))
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		operands = append(operands, args[0])
		args = args[1:]
	}
	given := flagsGiven{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if err := c.opts.validate(given); err != nil {
		return nil, true, c.usageError(stderr, err)
	}
	if c.operands >= 0 && len(operands) != c.operands {
		if c.operands == 0 {
			return nil, true, c.usageError(stderr, fmt.Errorf("unexpected argument %q", operands[0]))
		}
		return nil, true, c.usageError(stderr, fmt.Errorf("want %d operand(s), got %d", c.operands, len(operands)))
	}
	return operands, false, 0
}

func (c *command) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	// Errors are printed by parse on one line; -h prints c.help.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c.opts.register(fs)
	return fs
}

// dashes spells the flag package's errors with the flags as they are
// documented: "--count", not "-count".
func dashes(err error) error {
	msg := err.Error()
	msg = strings.Replace(msg, "flag provided but not defined: -", "unknown flag --", 1)
	msg = strings.Replace(msg, " for flag -", " for flag --", 1)
	msg = strings.Replace(msg, "flag needs an argument: -", "flag needs an argument: --", 1)
	return errors.New(msg)
}

// usageError prints a one-line usage error naming the command and its
// help; it returns exit status 2.
func (c *command) usageError(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "%s: %s (%s --help for usage)\n", c.name, errLine(err), c.name)
	return exitUsage
}

// help prints the command's usage line, its paragraph, its own flags
// and what follows them.
func (c *command) help(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s %s\n\n%s\n", c.name, c.synopsis, strings.TrimSpace(c.about))
	fs := c.flagSet()
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintf(w, "\nFlags:\n")
		printFlags(w, fs)
	}
	if c.more != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.more))
	}
}

// printFlags lists fs's flags in name order: "--name VALUE", its help
// and its default when that is not the zero value.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	const col = 22 // help column
	fs.VisitAll(func(f *flag.Flag) {
		value, usage := flag.UnquoteUsage(f)
		if _, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && value == "value" {
			value = ""
		}
		head := "  --" + f.Name
		if value != "" {
			head += " " + value
		}
		if d := f.DefValue; d != "" && d != "0" && d != "false" && d != "0s" && !strings.Contains(usage, "default") {
			usage += " (default " + d + ")"
		}
		lines := strings.Split(usage, "\n")
		if len(head) < col-1 {
			fmt.Fprintf(w, "%-*s%s\n", col, head, lines[0])
		} else {
			fmt.Fprintf(w, "%s\n%*s%s\n", head, col, "", lines[0])
		}
		for _, l := range lines[1:] {
			fmt.Fprintf(w, "%*s%s\n", col, "", strings.TrimSpace(l))
		}
	})
}
