package kvcache

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// ParseConfig reads a kvtrack configuration written in YAML or JSON (JSON is
// YAML), applies the defaults and validates it. Decoding is strict: a field
// the schema does not have, a value of the wrong type or a bad duration is a
// *FieldError naming its path ("hash.blockSzie"), what is valid, and the
// closest known field when one is near. An empty document gives the
// defaults, which the vllm key scheme rejects for want of hash.seed.
//
// It is the one loader behind the EPP plugin's parameters, the router's
// kvcache section, the CLI's --config and doctor.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	if err := DecodeStrict(data, &cfg); err != nil {
		return Config{}, err
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// LoadConfig reads the file at path with ParseConfig; errors name the file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("kvcache config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// DecodeStrict decodes YAML or JSON data into v, a pointer to a struct
// whose fields carry json tags, with ParseConfig's strictness: unknown
// fields and ill-typed values are *FieldErrors naming their path. It applies
// no defaults. Programs that embed Config in a file of their own (as
// examples/router does under "kvcache") decode the whole file with it.
func DecodeStrict(data []byte, v any) error {
	js, tree, err := yamlToJSON(data)
	if err != nil {
		return err
	}
	if tree == nil {
		return nil // an empty document: every field takes its default
	}
	if err := checkFields(tree, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("kvcache config: trailing data after the document")
	}
	return nil
}

// yamlToJSON reads one YAML (or JSON) document and returns it as JSON and as
// the tree json.Unmarshal would give: the decoding itself is left to
// encoding/json, so JSON and YAML files obey the same json tags.
func yamlToJSON(data []byte) ([]byte, any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc any
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("kvcache config: not YAML or JSON: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("kvcache config: trailing data after the document (valid: one YAML or JSON document)")
	}
	if doc == nil {
		return nil, nil, nil
	}
	js, err := json.Marshal(doc)
	if err != nil {
		// yaml.v3 gives map[any]any for a mapping with a non-string key.
		return nil, nil, fmt.Errorf("kvcache config: %w (valid: mappings whose keys are field names)", err)
	}
	var tree any
	if err := json.Unmarshal(js, &tree); err != nil {
		return nil, nil, fmt.Errorf("kvcache config: %w", err)
	}
	return js, tree, nil
}

// decodeError turns encoding/json's errors into FieldErrors where it can.
func decodeError(err error) error {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		// A type error inside HashConfig.UnmarshalJSON names its helper
		// struct ("hash.plain.blockSize"); the schema has no such level.
		return &FieldError{Field: strings.ReplaceAll(te.Field, "plain.", ""), Err: fmt.Errorf("a %s is not valid here (valid: %s)", te.Value, describeType(te.Type))}
	}
	return fmt.Errorf("kvcache config: %w", err)
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkFields walks the decoded document beside the Go type it will be
// decoded into and reports the first field the type does not have, and the
// first value a TextUnmarshaler (a Duration) refuses, with its path.
func checkFields(node any, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		s, ok := node.(string)
		if !ok {
			if node == nil {
				return nil
			}
			return &FieldError{Field: path, Err: fmt.Errorf("%v is not valid here (valid: %s)", node, describeType(t))}
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return &FieldError{Field: path, Err: err}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := node.(map[string]any)
		if !ok {
			return nil // a type error, which the decoder reports with its path
		}
		fields := jsonFields(t)
		names := make([]string, 0, len(obj))
		for name := range obj {
			names = append(names, name)
		}
		slices.Sort(names) // report the same field first every time
		for _, name := range names {
			ft, ok := fields[name]
			if !ok {
				return &FieldError{Field: join(path, name), Err: unknownField(name, fields)}
			}
			if err := checkFields(obj[name], ft, join(path, name)); err != nil {
				return err
			}
		}
	case reflect.Map:
		obj, ok := node.(map[string]any)
		if !ok {
			return nil
		}
		for name, child := range obj {
			if err := checkFields(child, t.Elem(), join(path, name)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		arr, ok := node.([]any)
		if !ok {
			return nil
		}
		for i, child := range arr {
			if err := checkFields(child, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonFields maps the JSON names of t's fields, embedded structs' included,
// to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type)
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" && f.Anonymous {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, typ := range jsonFields(ft) {
					if _, ok := fields[n]; !ok {
						fields[n] = typ
					}
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

// unknownField says which fields are valid, and which one was likely meant.
func unknownField(name string, fields map[string]reflect.Type) error {
	valid := make([]string, 0, len(fields))
	for n := range fields {
		valid = append(valid, n)
	}
	slices.Sort(valid)
	best, bestDist := "", 3
	for _, n := range valid {
		d := editDistance(strings.ToLower(name), strings.ToLower(n))
		if d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return fmt.Errorf("unknown field (did you mean %q? valid: %s)", best, strings.Join(valid, ", "))
	}
	return fmt.Errorf("unknown field (valid: %s)", strings.Join(valid, ", "))
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// describeType names what a Go type accepts, for error messages.
func describeType(t reflect.Type) string {
	if t == reflect.TypeFor[Duration]() {
		return `a duration such as "500ms" or "30s"`
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Struct, reflect.Map:
		return "a mapping of fields"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Pointer:
		return describeType(t.Elem())
	}
	return t.String()
}
