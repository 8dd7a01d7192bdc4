package e2e

// The OpenAPI side of the bad-input sweep (sweep_test.go): just enough of an OpenAPI 3.1 reader
// to list the operations of the spec's client-server and server-server definitions with their
// parameters, request body schema, security and documented responses.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// specDir finds the Matrix specification checkout: $LATTICE_SPEC_DIR, or shared/spec beside
// the repository (CI clones the repository with ../shared next to it).
func specDir(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("LATTICE_SPEC_DIR"), "../../shared/spec", "../../../shared/spec"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if st, err := os.Stat(filepath.Join(c, "data", "api", "client-server")); err == nil && st.IsDir() {
			return c
		}
	}
	t.Skip("Matrix spec not found: set LATTICE_SPEC_DIR or check it out at ../shared/spec beside the repository")
	return ""
}

// apiSchema is the part of a JSON schema the sweep uses to build and break request bodies.
type apiSchema struct {
	Type     string // "object", "array", "string", "integer", "number", "boolean" or "" (any)
	Format   string
	Enum     []any
	Props    map[string]*apiSchema
	Required []string
	Items    *apiSchema
	AddProps *apiSchema // additionalProperties, for objects used as maps
}

// propNames returns the properties in a fixed order.
func (s *apiSchema) propNames() []string {
	names := make([]string, 0, len(s.Props))
	for n := range s.Props {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// apiParam is a path or query parameter.
type apiParam struct {
	Name     string
	In       string // "path" or "query"
	Required bool
	Schema   *apiSchema
}

// apiResponse is one documented response of an operation.
type apiResponse struct {
	ContentTypes []string
	Errcode      bool // its JSON schema has an errcode property
}

// apiOp is one operation (method and path) of the spec.
type apiOp struct {
	File       string // e.g. client-server/room_send.yaml
	Federation bool   // a server-server definition: served on the federation listener
	Method     string
	Path       string // base path and path template, e.g. /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
	Params     []apiParam
	Body       *apiSchema // nil when there is no request body
	BodyType   string     // the request body's content type
	Auth       string     // "" (none), "token", "optional-token" or "signed"
	Responses  map[string]apiResponse
}

func (op *apiOp) String() string { return op.Method + " " + op.Path }

// specLoader reads YAML files once and follows $ref between and within them.
type specLoader struct {
	files map[string]any
}

func (l *specLoader) file(path string) (any, error) {
	if doc, ok := l.files[path]; ok {
		return doc, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	l.files[path] = doc
	return doc, nil
}

// deref follows $ref chains from node, found in file, and returns the node and its file.
func (l *specLoader) deref(file string, node any) (string, any, error) {
	for range 20 {
		m, ok := node.(map[string]any)
		if !ok {
			return file, node, nil
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return file, node, nil
		}
		target, frag, _ := strings.Cut(ref, "#")
		if target != "" {
			file = filepath.Join(filepath.Dir(file), target)
		}
		doc, err := l.file(file)
		if err != nil {
			return "", nil, err
		}
		node = doc
		for _, part := range strings.Split(strings.Trim(frag, "/"), "/") {
			if part == "" {
				continue
			}
			next, ok := node.(map[string]any)[part]
			if !ok {
				return "", nil, fmt.Errorf("%s: no %s", file, ref)
			}
			node = next
		}
	}
	return "", nil, fmt.Errorf("%s: $ref loop", file)
}

// schema converts a JSON schema node to an apiSchema, following references, merging allOf
// and taking the first choice of oneOf and anyOf.
func (l *specLoader) schema(file string, node any, depth int) *apiSchema {
	file, node, err := l.deref(file, node)
	m, ok := node.(map[string]any)
	if err != nil || !ok || depth > 12 {
		return &apiSchema{}
	}
	s := &apiSchema{Props: map[string]*apiSchema{}}
	switch typ := m["type"].(type) {
	case string:
		s.Type = typ
	case []any:
		for _, t := range typ {
			if ts, _ := t.(string); ts != "null" && s.Type == "" {
				s.Type = ts
			}
		}
	}
	s.Format, _ = m["format"].(string)
	s.Enum, _ = m["enum"].([]any)
	if props, ok := m["properties"].(map[string]any); ok {
		for name, p := range props {
			s.Props[name] = l.schema(file, p, depth+1)
		}
	}
	for _, r := range asList(m["required"]) {
		if name, ok := r.(string); ok {
			s.Required = append(s.Required, name)
		}
	}
	if items, ok := m["items"]; ok {
		s.Items = l.schema(file, items, depth+1)
	}
	if ap, ok := m["additionalProperties"].(map[string]any); ok {
		s.AddProps = l.schema(file, ap, depth+1)
	}
	for _, sub := range asList(m["allOf"]) {
		l.merge(s, l.schema(file, sub, depth+1))
	}
	for _, key := range []string{"oneOf", "anyOf"} {
		if choices := asList(m[key]); len(choices) > 0 {
			l.merge(s, l.schema(file, choices[0], depth+1))
		}
	}
	if s.Type == "" && len(s.Props) > 0 {
		s.Type = "object"
	}
	return s
}

func (l *specLoader) merge(into, from *apiSchema) {
	if into.Type == "" {
		into.Type = from.Type
	}
	if into.Format == "" {
		into.Format = from.Format
	}
	if into.Enum == nil {
		into.Enum = from.Enum
	}
	for name, p := range from.Props {
		if _, ok := into.Props[name]; !ok {
			into.Props[name] = p
		}
	}
	into.Required = append(into.Required, from.Required...)
	if into.Items == nil {
		into.Items = from.Items
	}
	if into.AddProps == nil {
		into.AddProps = from.AddProps
	}
}

func asList(v any) []any { l, _ := v.([]any); return l }

// loadOperations lists every operation of the client-server and server-server definitions.
func loadOperations(t *testing.T, dir string) []*apiOp {
	t.Helper()
	l := &specLoader{files: map[string]any{}}
	var ops []*apiOp
	for _, api := range []string{"client-server", "server-server"} {
		files, err := filepath.Glob(filepath.Join(dir, "data", "api", api, "*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no OpenAPI files in %s/data/api/%s: %v", dir, api, err)
		}
		sort.Strings(files)
		for _, file := range files {
			fileOps, err := l.operations(file)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			for _, op := range fileOps {
				op.File = api + "/" + filepath.Base(file)
				op.Federation = api == "server-server"
			}
			ops = append(ops, fileOps...)
		}
	}
	return ops
}

// operations reads the operations of one OpenAPI file.
func (l *specLoader) operations(file string) ([]*apiOp, error) {
	docAny, err := l.file(file)
	if err != nil {
		return nil, err
	}
	doc, _ := docAny.(map[string]any)
	paths, _ := doc["paths"].(map[string]any)
	base := basePath(doc)
	var ops []*apiOp
	for path, item := range paths {
		_, itemAny, err := l.deref(file, item)
		if err != nil {
			return nil, err
		}
		methods, _ := itemAny.(map[string]any)
		for method, opAny := range methods {
			opMap, ok := opAny.(map[string]any)
			if !ok || method == "parameters" {
				continue
			}
			// The spec tells apart two definitions of one path with a trailing space.
			op := &apiOp{Method: strings.ToUpper(method), Path: base + strings.TrimSpace(path), Responses: map[string]apiResponse{}}
			op.Auth = l.auth(opMap)
			for _, p := range append(asList(methods["parameters"]), asList(opMap["parameters"])...) {
				pfile, pAny, err := l.deref(file, p)
				if err != nil {
					return nil, err
				}
				pm, _ := pAny.(map[string]any)
				in, _ := pm["in"].(string)
				if in != "path" && in != "query" {
					continue
				}
				name, _ := pm["name"].(string)
				req, _ := pm["required"].(bool)
				op.Params = append(op.Params, apiParam{Name: name, In: in, Required: req, Schema: l.schema(pfile, pm["schema"], 0)})
			}
			if rb, ok := opMap["requestBody"]; ok {
				rbFile, rbAny, err := l.deref(file, rb)
				if err != nil {
					return nil, err
				}
				content, _ := rbAny.(map[string]any)["content"].(map[string]any)
				for _, ct := range sortedKeys(content) {
					op.BodyType = ct
					media, _ := content[ct].(map[string]any)
					op.Body = l.schema(rbFile, media["schema"], 0)
					break
				}
			}
			responses, _ := opMap["responses"].(map[string]any)
			for status, r := range responses {
				rFile, rAny, err := l.deref(file, r)
				if err != nil {
					return nil, err
				}
				var resp apiResponse
				content, _ := rAny.(map[string]any)["content"].(map[string]any)
				for _, ct := range sortedKeys(content) {
					resp.ContentTypes = append(resp.ContentTypes, ct)
					media, _ := content[ct].(map[string]any)
					if sch := l.schema(rFile, media["schema"], 0); sch.Props["errcode"] != nil {
						resp.Errcode = true
					}
				}
				op.Responses[status] = resp
			}
			ops = append(ops, op)
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		if ops[i].Path != ops[j].Path {
			return ops[i].Path < ops[j].Path
		}
		return ops[i].Method < ops[j].Method
	})
	return ops, nil
}

// auth reads an operation's security requirement.
func (l *specLoader) auth(op map[string]any) string {
	sec, present := op["security"]
	if !present {
		return ""
	}
	auth := ""
	for _, req := range asList(sec) {
		m, _ := req.(map[string]any)
		if len(m) == 0 {
			return "optional-token" // {} among the choices: authentication is optional
		}
		for scheme := range m {
			switch {
			case scheme == "signedRequest":
				auth = "signed"
			case strings.Contains(scheme, "ccessToken"):
				auth = "token"
			}
		}
	}
	return auth
}

// basePath is the default basePath variable of the file's first server.
func basePath(doc map[string]any) string {
	for _, s := range asList(doc["servers"]) {
		sm, _ := s.(map[string]any)
		vars, _ := sm["variables"].(map[string]any)
		bp, _ := vars["basePath"].(map[string]any)
		if def, ok := bp["default"].(string); ok {
			return def
		}
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
