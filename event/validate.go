package event

import (
	"fmt"
	"math"
)

// ValidationError reports why a message is not a valid event. It is a
// permanent error: the message goes to the dead-letter destination with
// Error() as its reason and never reaches the index.
type ValidationError struct {
	// Field is the offending field as a path ("path", "add[2].size_bytes",
	// "min.ts"), or "" when the message as a whole is at fault.
	Field string
	// Reason says what is wrong, in words an operator can act on.
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return "invalid event: " + e.Reason
	}
	return "invalid event: " + e.Field + ": " + e.Reason
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate reports the first rule of schema v1 that e breaks, as a
// *ValidationError, or nil, with the default Config (any well-formed
// layer). It runs the code Decode runs once it has read a message, so an
// event Validate accepts is one the workers accept, provided its encoding
// fits their message limit (Encode checks that too). Decoder.Validate
// checks against a Decoder's Config (its layers).
func Validate(e *Event) error { return defaultDecoder.Validate(e) }

// Validate reports the first rule of schema v1 or of d's Config that e
// breaks, as a *ValidationError, or nil. It is the check Decode runs on
// every message after reading it: what d.Validate accepts, d.Decode of
// its encoding accepts (if it fits MaxMessageBytes; Encode checks both).
func (d *Decoder) Validate(e *Event) error {
	if err := validateEvent(e, d.layers); err != nil {
		return err
	}
	return nil
}

// validateEvent checks the rules that hold whatever the encoding was.
// Presence of required fields is checked by the decoder, which alone knows it.
func validateEvent(e *Event, layers map[string]bool) *ValidationError {
	if !validID(e.ID) {
		return invalid("id", "must be 1 to 128 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit")
	}
	if err := checkTime("time", e.Time); err != nil {
		return err
	}
	if !validName(e.Database) {
		return invalid("database", nameRule)
	}
	if !validName(e.Table) {
		return invalid("table", nameRule)
	}
	if e.Plan != nil {
		if e.Type != FilesReplaced {
			return invalid("plan", "only files.replaced events carry a plan")
		}
		if err := validatePlan(e.Plan); err != nil {
			return err
		}
	}
	switch e.Type {
	case FileCreated:
		return validateFile(fileAt{}, &e.File, true, layers)
	case FileDeleted:
		return validateFile(fileAt{}, &e.File, false, layers)
	case FilesReplaced:
		n := len(e.Add) + len(e.Remove)
		if n == 0 {
			return invalid("add", "files.replaced needs at least one file in add or remove")
		}
		if n > MaxFilesPerEvent {
			return invalid("add", "files.replaced may name at most %d files in add and remove together, not %d", MaxFilesPerEvent, n)
		}
		for i := range e.Add {
			if err := validateFile(fileAt{"add", i}, &e.Add[i], true, layers); err != nil {
				return err
			}
		}
		for i := range e.Remove {
			if err := validateFile(fileAt{"remove", i}, &e.Remove[i], false, layers); err != nil {
				return err
			}
		}
		return nil
	default:
		return invalid("type", "must be one of file.created, file.deleted, files.replaced")
	}
}

// validatePlan checks the plan of a files.replaced event.
func validatePlan(p *Plan) *ValidationError {
	if p.Kind != PlanMerge && p.Kind != PlanMove {
		return invalid("plan.kind", "must be merge or move, not %q", p.Kind)
	}
	if !validID(p.ID) {
		return invalid("plan.id", "must be 1 to 128 characters of A-Z a-z 0-9 . _ : - starting with a letter or digit")
	}
	if !validToken(p.Token) {
		return invalid("plan.token", "must be the decimal token 'indexer plan next' printed: 1 to 19 digits without leading zeros")
	}
	return nil
}

// validToken reports whether s matches ^[1-9][0-9]{0,18}$.
func validToken(s string) bool {
	if len(s) == 0 || len(s) > 19 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

const nameRule = "must be 1 to 128 characters of A-Z a-z 0-9 _ . - starting with a letter, digit or _"

// validateFile checks one file; at locates it in field names. full is
// true for files that become live (every numeric field is meaningful).
func validateFile(at fileAt, f *File, full bool, layers map[string]bool) *ValidationError {
	if !validName(f.Layer) {
		return invalid(at.field("layer"), nameRule)
	}
	if layers != nil && !layers[f.Layer] {
		return invalid(at.field("layer"), "layer %q is not configured (configured layers are set with --layers)", f.Layer)
	}
	if f.WriterID != "" && !validName(f.WriterID) {
		return invalid(at.field("writer_id"), "must be empty or %s", nameRule[len("must be "):])
	}
	if reason := pathReason(f.Path); reason != "" {
		return invalid(at.field("path"), "%s", reason)
	}
	if f.SizeBytes < 0 || f.SizeBytes > MaxSafeInt {
		return invalid(at.field("size_bytes"), "must be an integer from 0 to %d", MaxSafeInt)
	}
	if f.RowCount < 0 || f.RowCount > MaxSafeInt {
		return invalid(at.field("row_count"), "must be an integer from 0 to %d", MaxSafeInt)
	}
	for _, t := range [...]struct {
		name string
		v    int64
	}{{"chunk_time", f.ChunkTime}, {"min_time", f.MinTime}, {"max_time", f.MaxTime}} {
		if !validTime(t.v) {
			return timeInvalid(at.field(t.name))
		}
	}
	if f.MinTime > f.MaxTime && (full || f.MaxTime != 0) {
		return invalid(at.field("min_time"), "must not be after max_time (%d > %d)", f.MinTime, f.MaxTime)
	}
	return nil
}

func checkTime(field string, v int64) *ValidationError {
	if !validTime(v) {
		return timeInvalid(field)
	}
	return nil
}

func validTime(v int64) bool { return v >= 0 && v <= MaxTimeNanos }

func timeInvalid(field string) *ValidationError {
	return invalid(field, "must be Unix nanoseconds from 0 to %d", int64(MaxTimeNanos))
}

// ValidName reports whether s may name a database, table, layer or writer
// (^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$).
func ValidName(s string) bool { return validName(s) }

// validName reports whether s matches ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$,
// the charset of database, table, layer and writer names: nothing that could
// split a Redis key (":"), open a hash tag ("{", "}") or a path ("/").
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// validID reports whether s matches ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$.
func validID(s string) bool {
	if len(s) == 0 || len(s) > 128 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

const pathRule = "must be date=YYYY-MM-DD/hour=HH/<name>.<N>.parquet with a real UTC date from 1970 on, hour 00-23, <name> of 1-128 characters A-Z a-z 0-9 _ - and N from 1 to 999999"

// pathReason returns why p is not a valid file path, or "".
func pathReason(p string) string {
	// date=YYYY-MM-DD/hour=HH/
	if len(p) < dirLen+1 || p[:5] != "date=" || p[15:21] != "/hour=" || p[dirLen] != '/' {
		return pathRule
	}
	d := p[5:15]
	if !isDigit(d[0]) || !isDigit(d[1]) || !isDigit(d[2]) || !isDigit(d[3]) || d[4] != '-' ||
		!isDigit(d[5]) || !isDigit(d[6]) || d[7] != '-' || !isDigit(d[8]) || !isDigit(d[9]) ||
		!isDigit(p[21]) || !isDigit(p[22]) {
		return pathRule
	}
	year := int(d[0]-'0')*1000 + int(d[1]-'0')*100 + int(d[2]-'0')*10 + int(d[3]-'0')
	month := int(d[5]-'0')*10 + int(d[6]-'0')
	day := int(d[8]-'0')*10 + int(d[9]-'0')
	hour := int(p[21]-'0')*10 + int(p[22]-'0')
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) {
		return "date " + d + " is not a real calendar date; " + pathRule
	}
	if year < 1970 {
		return "date " + d + " is before 1970, which GigAPI's readers never return; " + pathRule
	}
	if hour > 23 {
		return "hour " + p[21:23] + " is not 00-23; " + pathRule
	}
	// <name>.<N>.parquet
	rest := p[dirLen+1:]
	const ext = ".parquet"
	if len(rest) <= len(ext) || rest[len(rest)-len(ext):] != ext {
		return pathRule
	}
	rest = rest[:len(rest)-len(ext)]
	dot := -1
	for i := len(rest) - 1; i >= 0; i-- {
		if rest[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 1 || dot > 128 {
		return pathRule
	}
	for i := 0; i < dot; i++ {
		c := rest[i]
		if !(isAlnum(c) || c == '_' || c == '-') {
			return pathRule
		}
	}
	n := rest[dot+1:]
	if len(n) == 0 || len(n) > 6 || n[0] == '0' {
		return pathRule
	}
	for i := 0; i < len(n); i++ {
		if !isDigit(n[i]) {
			return pathRule
		}
	}
	return ""
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	default:
		return 31
	}
}

// parseDecimalTime parses the decimal-string form of a time field: digits
// without sign or leading zeros, within int64.
func parseDecimalTime(s []byte) (int64, bool) {
	if len(s) == 0 || len(s) > 19 || (s[0] == '0' && len(s) > 1) {
		return 0, false
	}
	var u uint64 // 19 digits fit a uint64
	for _, c := range s {
		if !isDigit(c) {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// CheckSingleDate returns a *ValidationError if e, a valid event, is a
// files.replaced whose files lie in more than one date ("date=YYYY-MM-DD"),
// and nil otherwise. On a Redis Cluster such an event cannot be applied
// atomically (see Config.SingleDate); GigAPI's merges and moves never
// leave their folder, so theirs never do.
func CheckSingleDate(e *Event) error {
	if err := checkSingleDate(e); err != nil {
		return err
	}
	return nil
}

func checkSingleDate(e *Event) *ValidationError {
	if e.Type != FilesReplaced {
		return nil
	}
	var date string
	var bad *ValidationError
	e.Files(func(f *File, deleted bool) {
		switch {
		case bad != nil:
		case date == "":
			date = f.Date()
		case f.Date() != date:
			bad = invalid("", "files.replaced spans %s and %s: the cluster layout applies one date of a table atomically; "+
				"send one files.replaced per date (GigAPI's merges and moves never leave their folder)", date, f.Date())
		}
	})
	return bad
}
