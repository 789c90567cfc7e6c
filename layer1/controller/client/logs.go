package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	logtypes "github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// maxLogLine bounds one line of a log answer.
const maxLogLine = logtypes.MaxWireLine + 1024

// Log reads an app's log: the last q.Lines lines that match q (its type,
// job and since filters), in time order, and with q.Follow the lines that
// come after them, until ctx ends. Each line is passed to fn as it comes;
// an error from fn ends the call with it. A followed log is bounded only by
// ctx; otherwise the call takes at most Timeout.
func (c *Client) Log(ctx context.Context, app string, q logtypes.Query, fn func(logtypes.Line) error) error {
	if !q.Follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, Timeout)
		defer cancel()
	}
	path := appPath(app) + "/log?" + q.Values().Encode()
	resp, err := c.openStream(ctx, http.MethodGet, path, "application/x-ndjson", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxLogLine)
	for sc.Scan() {
		var l logtypes.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("GET %s: decode a log line: %w", path, err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("GET %s: the log stream broke off: %w", path, err)
	}
	return nil
}
