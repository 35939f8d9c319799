package savevm

import "github.com/qfile/qfile/engine"

// VerifyImages is Verify returning each block's rebuilt content, so
// tests can compare it with the memory of a QEMU that loaded the stream.
func VerifyImages(src *engine.File, opts Options) (*Stats, map[string][]byte, error) {
	st, v, err := rebuild(src, opts)
	if err != nil {
		return st, nil, err
	}
	out := make(map[string][]byte, len(v.images))
	for i, im := range v.images {
		b := make([]byte, 0, im.length)
		v.each(im, func(p []byte) { b = append(b, p...) })
		out[st.Blocks[i].Name] = b
	}
	return st, out, nil
}

// VMDescSteps is how many device sections the vmdesc check looked at.
func VMDescSteps(r *Reader) int { return r.vmdescSteps }
