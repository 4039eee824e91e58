package worker

import (
	"strconv"
	"strings"
	"time"
)

// textPrefix starts every message text the generator sends.
const textPrefix = "lt|"

// encodeText returns a message text carrying a tracked index and the
// scheduled send time, padded to size bytes.
func encodeText(index int, scheduled time.Time, size int) string {
	var b strings.Builder
	b.Grow(max(size, 40))
	b.WriteString(textPrefix)
	b.WriteString(strconv.Itoa(index))
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(scheduled.UnixNano(), 10))
	b.WriteByte('|')
	for b.Len() < size {
		b.WriteByte('x')
	}
	return b.String()
}

// decodeText reads what encodeText wrote; ok is false for other texts.
func decodeText(text string) (index int, scheduled int64, ok bool) {
	rest, found := strings.CutPrefix(text, textPrefix)
	if !found {
		return 0, 0, false
	}
	idx, rest, found := strings.Cut(rest, "|")
	if !found {
		return 0, 0, false
	}
	at, _, found := strings.Cut(rest, "|")
	if !found {
		return 0, 0, false
	}
	i, err1 := strconv.Atoi(idx)
	t, err2 := strconv.ParseInt(at, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return i, t, true
}
