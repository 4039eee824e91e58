package parley

import "io"

// NewFailingReaderAt gives the black-box tests (package parley_test) the
// white-box tests' failingReaderAt instead of a copy of it.
func NewFailingReaderAt(r io.ReaderAt, failAt int64, skip int, err error) io.ReaderAt {
	return &failingReaderAt{r: r, failAt: failAt, skip: skip, err: err}
}
