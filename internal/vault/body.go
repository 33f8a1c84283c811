package vault

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/vault/api"
)

// maxLoginBody bounds a login response: a token, its policies and
// metadata fit in a few kilobytes.
const maxLoginBody = 64 << 10

// Costs of decoded JSON beyond its bytes, measured with encoding/json into
// map[string]any (Go 1.26): at most ~32 bytes per value and ~310 per object
// (a map's first group of slots); rounded up so the estimate stays above
// what decoding builds.
const (
	costPerValue  = 48
	costPerObject = 320
)

// Budget is charged for the bytes a response holds, as they arrive; a
// *budget.Mount. Nil charges nothing.
type Budget interface {
	Take(n int64) error
	Give(n int64)
}

// decodedSize bounds the memory the decoded form of a JSON body takes,
// without decoding it: every value but the first follows a ',', '[' or
// ':', and every object opens with '{'. Such bytes inside strings only
// raise the estimate.
func decodedSize(body []byte) int64 {
	values := bytes.Count(body, []byte{','}) + bytes.Count(body, []byte{'['}) + bytes.Count(body, []byte{':'}) + 1
	objects := bytes.Count(body, []byte{'{'})
	return int64(len(body)) + costPerValue*int64(values) + costPerObject*int64(objects)
}

// charge is what one call has charged to a budget.
type charge struct {
	b    Budget
	held int64
	// body is the last response's body as guard read it, or err why it
	// could not be.
	body []byte
	err  error
}

func (c *charge) take(n int64) error {
	if c.b == nil {
		return nil
	}
	if err := c.b.Take(n); err != nil {
		return err
	}
	c.held += n
	return nil
}

// release refunds the call's charges, once its caller accounts for what it
// keeps.
func (c *charge) release() {
	if c.b != nil {
		c.b.Give(c.held)
	}
}

// guard makes every response of cl's requests (errors and redirects
// included: the api package reads their bodies whole) be read at most limit
// bytes, charging ch as the bytes arrive and then for their decoded form,
// before anything decodes them.
func guard(cl *api.Client, limit int64, ch *charge) *api.Client {
	return cl.WithResponseCallbacks(func(r *api.Response) {
		body, err := readLimited(r.Body, limit, ch.take)
		_ = r.Body.Close()
		if err == nil {
			err = ch.take(decodedSize(body))
		}
		if err != nil {
			ch.body, ch.err = nil, &limitError{err}
			r.Body = io.NopCloser(errReader{ch.err})
			return
		}
		ch.body, ch.err = body, nil
		r.Body = io.NopCloser(bytes.NewReader(body))
	})
}

// readLimited reads r in chunks, charging each before reading more, and
// fails at more than limit bytes.
func readLimited(r io.Reader, limit int64, take func(int64) error) ([]byte, error) {
	var buf bytes.Buffer
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			if int64(buf.Len()+n) > limit {
				return nil, fmt.Errorf("%w: larger than %d bytes", ErrTooLarge, limit)
			}
			// Charged as the buffer grows, so the bytes held (its
			// capacity) are what is counted.
			if buf.Len()+n > buf.Cap() {
				before := buf.Cap()
				buf.Grow(n)
				if terr := take(int64(buf.Cap() - before)); terr != nil {
					return nil, terr
				}
			}
			buf.Write(chunk[:n])
		}
		if errors.Is(err, io.EOF) {
			return buf.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// limitError is a response cut at a bound (its size, a budget): the api
// package wraps it in its own text, and wrap takes it back out.
type limitError struct{ err error }

func (e *limitError) Error() string { return e.err.Error() }
func (e *limitError) Unwrap() error { return e.err }

// errReader fails every read with err, so the api package's reader of a
// body sees why it was cut.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
