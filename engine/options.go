package engine

// Option configures a File made by Open, NewFD or NewOSFile.
type Option func(*config)

type config struct {
	keepOpen bool
}

// KeepOpen makes Close leave the descriptor open: the File borrows it.
func KeepOpen() Option { return func(c *config) { c.keepOpen = true } }

func buildConfig(opts []Option) config {
	var c config
	for _, o := range opts {
		o(&c)
	}
	return c
}
