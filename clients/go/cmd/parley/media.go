package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

// imageTypes are the content types the server inspects and thumbnails: an
// upload of one of them is sent as an image message.
var imageTypes = map[string]string{
	"image/jpeg": ".jpg",
	"image/png":  ".png",
	"image/gif":  ".gif",
	"image/webp": ".webp",
}

func (a *app) sendFile(ctx context.Context, args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("%w: send-file CONV PATH [CAPTION ...]", errUsage)
	}
	client, err := a.client()
	if err != nil {
		return err
	}
	info, err := client.UploadFile(ctx, args[1])
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "media %s (%s)\n", info.GetMediaId(), describe(info.GetContentType(), info.GetSizeBytes(), info.GetWidth(), info.GetHeight()))
	caption := strings.Join(args[2:], " ")
	content := parley.File(info.GetMediaId(), caption)
	if _, ok := imageTypes[info.GetContentType()]; ok {
		content = parley.Image(info.GetMediaId(), caption)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	res, err := client.Chat().SendMessage(ctx, &parleyv1.SendMessageRequest{
		ConversationId: args[0],
		ClientMsgId:    id.String(),
		Content:        content,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "sent #%d\n", res.GetMessage().GetSeq())
	return nil
}

func (a *app) download(ctx context.Context, args []string) error {
	fs := newFlagSet("download", a.env)
	out := fs.String("o", "", "write to this `path` (default: the file's name, in the current directory)")
	thumb := fs.Bool("thumb", false, "download the image's thumbnail")
	force := fs.Bool("f", false, "overwrite an existing file")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: download [-o PATH] [-thumb] [-f] MEDIA_ID", errUsage)
	}
	mediaID := pos[0]
	client, err := a.client()
	if err != nil {
		return err
	}
	path := *out
	if path == "" {
		// The name comes from the uploader: only its last element is
		// used, so nothing lands outside the current directory.
		res, err := client.Media().GetMedia(ctx, &parleyv1.GetMediaRequest{MediaId: mediaID})
		if err != nil {
			return err
		}
		path = localName(res.GetMedia(), *thumb)
	}
	if !*force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s exists (-f overwrites it)", path)
		}
	}
	// Into a temporary file next to the target, renamed at the end, so a
	// failed download leaves nothing half-written behind.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".parley-download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	var opts []parley.DownloadOption
	if *thumb {
		opts = append(opts, parley.WithThumbnail())
	}
	info, err := client.Download(ctx, mediaID, tmp, opts...)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := place(tmp.Name(), path, *force); err != nil {
		return err
	}
	size := info.GetSizeBytes()
	if *thumb {
		size = info.GetThumbnail().GetSizeBytes()
	}
	fmt.Fprintf(a.stdout, "saved %s (%s)\n", path, humanBytes(size))
	return nil
}

// place moves the downloaded tmp to path; without force it never replaces
// a file, even one created during the download.
func place(tmp, path string, force bool) error {
	if err := os.Chmod(tmp, 0o644); err != nil {
		return err
	}
	if force {
		return os.Rename(tmp, path)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists (-f overwrites it)", path)
		}
		return err
	}
	return nil
}

// localName is where a download goes by default: the uploader's file name
// without any directory, or the media id when that leaves nothing usable.
// A thumbnail gets ".thumb" and its own type's extension.
func localName(info *parleyv1.MediaInfo, thumb bool) string {
	name := info.GetFileName()
	// Either separator: the uploader's system may not be this one.
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.TrimSpace(name)
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, 0) {
		name = info.GetMediaId()
	}
	if thumb {
		ext := imageTypes[info.GetThumbnail().GetContentType()]
		name = strings.TrimSuffix(name, filepath.Ext(name)) + ".thumb" + ext
	}
	return name
}

// mediaLine renders an image or file message's body, e.g.
// "[image 1200×800 cat.jpg, media 0190…] caption".
func mediaLine(kind string, ref *parleyv1.MediaRef) string {
	var b strings.Builder
	b.WriteString("[" + kind)
	if ref.GetWidth() > 0 && ref.GetHeight() > 0 {
		fmt.Fprintf(&b, " %d×%d", ref.GetWidth(), ref.GetHeight())
	}
	if ref.GetFileName() != "" {
		b.WriteString(" " + ref.GetFileName())
	}
	if kind == "file" {
		b.WriteString(" " + humanBytes(ref.GetSizeBytes()))
	}
	b.WriteString(", media " + ref.GetMediaId() + "]")
	if c := ref.GetCaption(); c != "" {
		b.WriteString(" " + strings.ReplaceAll(c, "\n", " ⏎ "))
	}
	return b.String()
}

// describe summarizes an upload for send-file's output.
func describe(contentType string, size uint64, w, h uint32) string {
	s := contentType + ", " + humanBytes(size)
	if w > 0 && h > 0 {
		s += fmt.Sprintf(", %d×%d", w, h)
	}
	return s
}

// humanBytes renders n in B, KiB, MiB or GiB with at most one decimal.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 2; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMG"[exp])
}
