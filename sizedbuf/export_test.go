package sizedbuf

// Internals for the external tests.
const (
	ChunkSize      = chunkSize
	LargeChunkSize = largeChunkSize
)

// ChunkSizes returns the size of each chunk in order.
func (b *Buffer) ChunkSizes() []int {
	s := make([]int, len(b.chunks))
	for i, c := range b.chunks {
		s[i] = len(c)
	}
	return s
}
