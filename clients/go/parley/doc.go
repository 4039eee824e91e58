// Package parley is the Go SDK for Parley, an instant-messaging server.
//
// A [Client] holds one device's credentials ([Register], [Login] or
// [Resume]) and refreshes its access token transparently: a refresh runs
// shortly before the access token expires, and again when the server answers
// "access token expired". Refreshes are serialized (single flight), because
// each refresh token works once and presenting a rotated one again revokes
// the device's session. The unary services are the generated clients with the
// credentials attached ([Client.Conversations], [Client.Chat]).
//
// A [Session] ([Client.Connect]) owns the device's bidirectional stream. It
// reconnects with exponential backoff and full jitter, de-duplicates
// messages by (conversation_id, seq), acknowledges what it handed to the
// application, pings at the server's heartbeat interval and retries
// unacknowledged sends with their original client_msg_id, so at most one copy
// of each message is committed. Events reach the application through
// [Session.Events]; see [Session] for the back-pressure contract.
//
// Photos and files travel apart from messages: [Client.Upload] (or
// [Client.UploadFile]) streams the bytes to the media service in 1 MiB
// chunks, resuming an interrupted upload where the server's copy ends, and
// returns a media id; a message then refers to it with [Image] or [File],
// and the server fills in the type, size and pixel size it detected.
// [Client.Download] streams media (or its thumbnail) to an io.Writer,
// resuming after the bytes already written and checking the SHA-256.
package parley
