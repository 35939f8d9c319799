package savevm_test

import (
	"bufio"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// facts is what a NAME.structure.txt file records about a stream (the
// reference description written alongside each stream QEMU made).
type facts struct {
	bytes  int64
	sha256 string

	magic   uint32
	version uint32
	config  string

	records, start, part, end, full int
	footers, distinct               int

	sections []factSection
	ramBy    map[string][3]int64 // section type -> zero, page, comp
	blocks   []factBlock

	pageRecords, zero, normal, comp, xbzrle int64
	cont, eos, distinctPages, resent        int64

	hdrTotal, be64, idstr, zeroFill, memSizeList, compLen int64
	payTotal, raw, zlib, xbzrlePay                        int64

	device, byFooterScan, framing int64

	eofOff, vmdescOff, jsonBytes int64
	devices, pageSize            int

	sha map[string]string // block -> rebuilt sha256
}

type factSection struct {
	typ     string
	id      uint32
	idstr   string
	inst    uint32
	ver     uint32
	payload int64
	off     int64
}

type factBlock struct {
	name   string
	length uint64
}

var (
	reFile     = regexp.MustCompile(`^file: (\d+) bytes, sha256 ([0-9a-f]{64})$`)
	reHeader   = regexp.MustCompile(`^header: magic 0x([0-9a-f]+) 'QEVM', version (\d+); configuration: '([^']*)'$`)
	reRecords  = regexp.MustCompile(`^section records: (\d+) total \((\d+) START, (\d+) PART, (\d+) END, (\d+) FULL\), (\d+) footers, (\d+) distinct sections$`)
	reSection  = regexp.MustCompile(`^  (START|PART|END|FULL)\s+id=(\d+)\s+(\S+)\s+inst=(\d+)\s+ver=(\d+)\s+payload=(\d+) @0x([0-9a-f]+)$`)
	reRAMBy    = regexp.MustCompile(`(START|PART|END|FULL)\(zero=(\d+) page=(\d+) comp=(\d+)\)`)
	reBlocks   = regexp.MustCompile(`^RAM blocks \(MEM_SIZE list\): (.*)$`)
	reBlock    = regexp.MustCompile(`^(.+)=0x([0-9a-f]+)$`)
	rePages    = regexp.MustCompile(`^RAM page records: (\d+) \(zero (\d+), full PAGE (\d+), COMPRESS_PAGE (\d+), XBZRLE (\d+)\); CONTINUE (\d+); EOS (\d+); distinct pages (\d+), sent more than once (\d+)$`)
	reRAMBytes = regexp.MustCompile(`^RAM bytes: headers (\d+) \(be64 (\d+), idstr (\d+), zero fill (\d+), MEM_SIZE list (\d+), comp len (\d+)\) \+ page payload (\d+) \(raw (\d+), zlib (\d+), xbzrle (\d+)\)$`)
	reDevice   = regexp.MustCompile(`^device \(non-RAM\) section payloads: (\d+) bytes \(.*; (\d+) found by footer scan instead\); section/record framing \(.*\): (\d+) bytes$`)
	reEOF      = regexp.MustCompile(`^EOF \(0x00\) at 0x([0-9a-f]+); vmdesc: 0x06 at 0x([0-9a-f]+), JSON (\d+) bytes, (\d+) devices, page_size (\d+)$`)
	reSHA      = regexp.MustCompile(`^  rebuilt block (\S+)\s+sha256 ([0-9a-f]{64})$`)
)

// readFacts parses a structure file; every line it does not know, and
// every fact it does not find, fails the test, so the comparison cannot
// silently cover less than the file says.
func readFacts(t *testing.T, path string) *facts {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fx := &facts{ramBy: map[string][3]int64{}, sha: map[string]string{}}
	seen := map[string]bool{}
	n := func(s string) int64 {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return v
	}
	hex := func(s string) int64 {
		v, err := strconv.ParseInt(s, 16, 64)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return v
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := reFile.FindStringSubmatch(line); m != nil {
			fx.bytes, fx.sha256 = n(m[1]), m[2]
			seen["file"] = true
		} else if m := reHeader.FindStringSubmatch(line); m != nil {
			fx.magic, fx.version, fx.config = uint32(hex(m[1])), uint32(n(m[2])), m[3]
			seen["header"] = true
		} else if m := reRecords.FindStringSubmatch(line); m != nil {
			fx.records, fx.start, fx.part, fx.end, fx.full = int(n(m[1])), int(n(m[2])), int(n(m[3])), int(n(m[4])), int(n(m[5]))
			fx.footers, fx.distinct = int(n(m[6])), int(n(m[7]))
			seen["records"] = true
		} else if strings.HasPrefix(line, "sections (id idstr instance version)") {
		} else if m := reSection.FindStringSubmatch(line); m != nil {
			fx.sections = append(fx.sections, factSection{
				typ: m[1], id: uint32(n(m[2])), idstr: m[3], inst: uint32(n(m[4])), ver: uint32(n(m[5])),
				payload: n(m[6]), off: hex(m[7]),
			})
		} else if strings.HasPrefix(line, "RAM section records:") {
			for _, m := range reRAMBy.FindAllStringSubmatch(line, -1) {
				fx.ramBy[m[1]] = [3]int64{n(m[2]), n(m[3]), n(m[4])}
			}
			seen["ramby"] = true
		} else if m := reBlocks.FindStringSubmatch(line); m != nil {
			for _, b := range strings.Split(m[1], ", ") {
				bm := reBlock.FindStringSubmatch(b)
				if bm == nil {
					t.Fatalf("%s: block %q", path, b)
				}
				fx.blocks = append(fx.blocks, factBlock{name: bm[1], length: uint64(hex(bm[2]))})
			}
			seen["blocks"] = true
		} else if m := rePages.FindStringSubmatch(line); m != nil {
			fx.pageRecords, fx.zero, fx.normal, fx.comp, fx.xbzrle = n(m[1]), n(m[2]), n(m[3]), n(m[4]), n(m[5])
			fx.cont, fx.eos, fx.distinctPages, fx.resent = n(m[6]), n(m[7]), n(m[8]), n(m[9])
			seen["pages"] = true
		} else if m := reRAMBytes.FindStringSubmatch(line); m != nil {
			fx.hdrTotal, fx.be64, fx.idstr, fx.zeroFill, fx.memSizeList, fx.compLen = n(m[1]), n(m[2]), n(m[3]), n(m[4]), n(m[5]), n(m[6])
			fx.payTotal, fx.raw, fx.zlib, fx.xbzrlePay = n(m[7]), n(m[8]), n(m[9]), n(m[10])
			seen["rambytes"] = true
		} else if m := reDevice.FindStringSubmatch(line); m != nil {
			fx.device, fx.byFooterScan, fx.framing = n(m[1]), n(m[2]), n(m[3])
			seen["device"] = true
		} else if m := reEOF.FindStringSubmatch(line); m != nil {
			fx.eofOff, fx.vmdescOff, fx.jsonBytes = hex(m[1]), hex(m[2]), n(m[3])
			fx.devices, fx.pageSize = int(n(m[4])), int(n(m[5]))
			seen["eof"] = true
		} else if m := reSHA.FindStringSubmatch(line); m != nil {
			fx.sha[m[1]] = m[2]
		} else if line == "re-emit from parsed fields: byte-identical" {
			seen["reemit"] = true
		} else {
			t.Fatalf("%s: line not understood: %q", path, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"file", "header", "records", "ramby", "blocks", "pages", "rambytes", "device", "eof", "reemit"} {
		if !seen[k] {
			t.Fatalf("%s: no %s line", path, k)
		}
	}
	if len(fx.sections) != fx.distinct || len(fx.sha) != len(fx.blocks) {
		t.Fatalf("%s: %d sections listed for %d distinct, %d sha256 for %d blocks", path, len(fx.sections), fx.distinct, len(fx.sha), len(fx.blocks))
	}
	return fx
}
