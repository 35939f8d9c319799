package testutil

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/qfile/qfile"

// allowed lists, for each package of ours, the packages of ours it may
// import: imports point down the data path only (docs/architecture.md).
var allowed = map[string][]string{
	"iov":        nil,
	"sizedbuf":   nil,
	"arena":      nil,
	"ring":       nil,
	"zero":       nil,
	"engine":     {"iov", "sizedbuf", "arena", "ring", "zero"},
	"multifd":    {"engine", "iov", "sizedbuf", "arena", "zero"},
	"savevm":     {"engine", "multifd", "iov", "sizedbuf", "arena", "zero"},
	"bench":      {"engine", "multifd", "iov", "sizedbuf", "arena", "ring", "zero"},
	"cmd/qbench": {"bench", "engine", "multifd", "savevm", "arena", "zero", "ring"},
}

// TestImportsPointDown parses every non-test Go file of the module and
// fails on an import of ours that is not allowed.
func TestImportsPointDown(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "internal") {
			return nil
		}
		ok, known := allowed[rel]
		if !known {
			t.Errorf("%s: package %q has no entry in the import rules", path, rel)
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p := strings.Trim(imp.Path.Value, `"`)
			if !strings.HasPrefix(p, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(p, module+"/")
			checked++
			if !contains(ok, dep) {
				t.Errorf("%s imports %s: %s may import only %v", path, dep, rel, ok)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked == 0 {
		t.Fatalf("no imports of ours found: the walk checked nothing")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
