package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"time"
)

// Numeric flags that refuse values that make no sense, wherever the value
// comes from (command line, INDEXER_* or --config): a zero is either
// refused or means what the help text says, never silently a default.

// intValue is an int flag with a lower bound.
type intValue struct {
	p   *int
	min int
}

func (v intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.Itoa(*v.p)
}

func (v intValue) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	if err != nil {
		return errors.New("not an integer")
	}
	if int(n) < v.min {
		return fmt.Errorf("must be at least %d", v.min)
	}
	*v.p = int(n)
	return nil
}

// intVar defines an int flag that refuses values below min; the help
// text says so.
func intVar(fs *flag.FlagSet, p *int, name string, value, min int, usage string) {
	*p = value
	fs.Var(intValue{p, min}, name, fmt.Sprintf("%s (at least %d)", usage, min))
}

// durationValue is a duration flag that refuses negative values, and zero
// unless zero has a meaning.
type durationValue struct {
	p         *time.Duration
	zeroValid bool
}

func (v durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration (e.g. 500ms, 30s, 5m, 168h)")
	}
	switch {
	case d < 0:
		return errors.New("must not be negative")
	case d == 0 && !v.zeroValid:
		return errors.New("must be more than 0")
	}
	*v.p = d
	return nil
}

// durationVar defines a duration flag that refuses negative values. zero
// says what 0 means ("no lingering"); empty refuses 0. The help text says
// which.
func durationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, zero, usage string) {
	*p = value
	if zero == "" {
		usage += " (more than 0)"
	} else {
		usage += " (0: " + zero + ")"
	}
	fs.Var(durationValue{p, zero != ""}, name, usage)
}
