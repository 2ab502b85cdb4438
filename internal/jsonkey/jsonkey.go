// Package jsonkey finds repeated keys in JSON objects. encoding/json keeps the
// last of two equal keys, and matches struct fields case-insensitively, so
// {"tenant":"caami","Tenant":"ona"} decodes as tenant "ona" while a reader of
// the body (or another JSON parser) may see "caami". Decoders of outside input
// refuse such bodies instead of picking one.
package jsonkey

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Repeated returns the path of the first key that repeats an earlier key of
// its object, such as "tenant" or "streams[0].stream.app", and true; or false
// when no key repeats. Keys are compared as encoding/json matches them to
// struct fields: ignoring case, so two keys that differ only in case repeat
// each other even in an object that decodes into a map. An empty key is
// named "" in the path, so that the path of a repeat is never empty and a
// message naming it names something. In invalid JSON only
// the keys before the first error count: the caller's decoder says what is
// wrong with it.
func Repeated(data []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers are skipped: no need to parse them as floats
	path, repeated, err := value(dec, "")
	if err != nil {
		return "", false
	}
	return path, repeated
}

// value reads one JSON value from dec; at is its path.
func value(dec *json.Decoder, at string) (string, bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", false, err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return "", false, err
			}
			key, _ := k.(string) // Token returns object keys as strings
			p := key
			if key == "" {
				p = `""`
			}
			if at != "" {
				p = at + "." + p
			}
			folded := fold(key)
			if seen[folded] {
				return p, true, nil
			}
			seen[folded] = true
			if path, repeated, err := value(dec, p); repeated || err != nil {
				return path, repeated, err
			}
		}
		_, err := dec.Token() // '}'
		return "", false, err
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if path, repeated, err := value(dec, at+"["+strconv.Itoa(i)+"]"); repeated || err != nil {
				return path, repeated, err
			}
		}
		_, err := dec.Token() // ']'
		return "", false, err
	}
	return "", false, nil
}

// fold maps the keys encoding/json matches to one field to one string: its
// folding also equates the Kelvin sign with k and the long s with s, which
// upper- then lower-casing does too.
func fold(key string) string { return strings.ToLower(strings.ToUpper(key)) }
