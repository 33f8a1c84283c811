package vault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/hashicorp/vault/api"

	"github.com/okevault/vault-csi-provider/internal/redact"
)

// maxBody bounds a response read into memory; the driver refuses gRPC
// messages over 4 MiB by default anyway.
const maxBody = 4 << 20

// ErrTooLarge marks a response over maxBody: retrying cannot help.
var ErrTooLarge = errors.New("vault response too large")

// Request is one call to a secrets engine.
type Request struct {
	Method string // GET, PUT or POST
	Path   string // without /v1/
	Query  url.Values
	Args   map[string]any // JSON body for PUT/POST
	// Budget is charged for the response as it arrives, until Do returns;
	// the caller then accounts for Response.Size. Nil: no budget.
	Budget Budget
}

// Response is a secrets engine's answer.
type Response struct {
	// Body is the raw JSON response, what the peer writes for objects without
	// secretKey.
	Body []byte
	// Data is the secret's key/value map: data.data for KV v2, data otherwise.
	Data map[string]any
	// KVVersion is 2 when Data came from a KV v2 envelope, 1 otherwise.
	KVVersion int
	// Metadata is KV v2's data.metadata (version, created_time), nil otherwise.
	Metadata map[string]any
	// Size bounds the bytes the response holds: Body and its decoded form.
	Size int64
}

// KV2Version is the metadata.version of a KV v2 read, "" for any other
// response.
func (r *Response) KV2Version() string {
	v, _ := r.Metadata["version"].(json.Number) // parse decodes numbers as json.Number
	return v.String()
}

// Do sends req with token. PUT and POST are the same operation to Vault, so
// both are sent as PUT.
func Do(ctx context.Context, base *api.Client, token redact.Secret, req Request) (*Response, error) {
	c, err := base.Clone()
	if err != nil {
		return nil, err
	}
	c.SetToken(token.Reveal())
	ch := &charge{b: req.Budget}
	defer ch.release()
	c = guard(c, maxBody, ch)

	var resp *api.Response
	switch req.Method {
	case http.MethodGet, "":
		resp, err = c.Logical().ReadRawWithDataWithContext(ctx, req.Path, req.Query)
	case http.MethodPut, http.MethodPost:
		var body []byte
		if body, err = json.Marshal(req.Args); err != nil {
			return nil, fmt.Errorf("encode secretArgs for %s: %w", req.Path, err)
		}
		path := req.Path
		if len(req.Query) > 0 {
			path += "?" + req.Query.Encode()
		}
		resp, err = c.Logical().WriteRawWithContext(ctx, path, body)
	default:
		return nil, fmt.Errorf("unsupported method %q", req.Method)
	}
	if resp != nil {
		defer func() { _ = resp.Body.Close() }()
	}
	if err != nil {
		return nil, wrap(req.Method, req.Path, err)
	}
	if resp == nil || resp.StatusCode == http.StatusNoContent {
		return nil, &Error{Op: req.Method, Path: req.Path, Status: http.StatusNotFound, Msg: "no data at this path"}
	}
	// guard has read the body, within maxBody, or says why not.
	if ch.err != nil {
		return nil, wrap(req.Method, req.Path, ch.err)
	}
	return parse(req, ch.body)
}

// parse unwraps the secret's data. KV v2 is recognised by its envelope
// (data.data and data.metadata maps) rather than by reading mount metadata,
// which would cost a request and a policy on sys/mounts.
func parse(req Request, body []byte) (*Response, error) {
	var envelope struct {
		Data map[string]any `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&envelope); err != nil {
		return nil, &Error{Op: req.Method, Path: req.Path, Status: http.StatusOK, Msg: "response is not JSON", Err: err}
	}
	r := &Response{Body: body, Data: envelope.Data, KVVersion: 1, Size: int64(len(body)) + decodedSize(body)}
	inner, innerOK := envelope.Data["data"].(map[string]any)
	meta, metaOK := envelope.Data["metadata"].(map[string]any)
	if innerOK && metaOK {
		r.Data, r.Metadata, r.KVVersion = inner, meta, 2
	}
	if envelope.Data["data"] == nil && metaOK {
		// A KV v2 version that was deleted or destroyed: data is null.
		return nil, &Error{Op: req.Method, Path: req.Path, Status: http.StatusNotFound, Msg: "secret version is deleted or destroyed"}
	}
	return r, nil
}
