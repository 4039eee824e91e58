package parley

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// Client is one signed-in device of one user. It is safe for concurrent use.
// A Client starts no goroutines; the [Session]s it opens do, and each must be
// closed.
type Client struct {
	baseURL       string
	cfg           *clientConfig
	tokens        *tokenManager
	auth          parleyv1connect.AuthServiceClient // authenticated: Logout
	chat          parleyv1connect.ChatServiceClient
	conversations parleyv1connect.ConversationServiceClient
	media         parleyv1connect.MediaServiceClient
	logger        *slog.Logger
}

// Register creates the account username on the server at baseURL (e.g.
// "http://127.0.0.1:8080") and signs this device in. The error carries the
// server's Connect code: AlreadyExists when the username is taken,
// InvalidArgument for a malformed username or a password shorter than 8 bytes.
func Register(ctx context.Context, baseURL, username, password string, opts ...Option) (*Client, error) {
	cfg := newClientConfig(opts)
	anon := newAnonAuth(baseURL, cfg)
	res, err := anon.Register(ctx, &parleyv1.RegisterRequest{
		Username:    username,
		Password:    password,
		DisplayName: cfg.displayName,
		DeviceName:  cfg.deviceName,
	})
	if err != nil {
		return nil, fmt.Errorf("parley: register: %w", err)
	}
	return newClient(baseURL, cfg, anon, credentialsOf(res.GetUser(), res.GetDeviceId(), res.GetTokens())), nil
}

// Login signs a new device of an existing account in. A wrong username or
// password is Unauthenticated.
func Login(ctx context.Context, baseURL, username, password string, opts ...Option) (*Client, error) {
	cfg := newClientConfig(opts)
	anon := newAnonAuth(baseURL, cfg)
	res, err := anon.Login(ctx, &parleyv1.LoginRequest{
		Username:   username,
		Password:   password,
		DeviceName: cfg.deviceName,
	})
	if err != nil {
		return nil, fmt.Errorf("parley: login: %w", err)
	}
	return newClient(baseURL, cfg, anon, credentialsOf(res.GetUser(), res.GetDeviceId(), res.GetTokens())), nil
}

// Resume rebuilds a Client from credentials saved earlier (see
// [Client.Credentials] and [WithCredentialsHook]). It does no I/O; an
// expired or revoked session shows up on the first call as an error wrapping
// [ErrRevoked].
func Resume(baseURL string, creds Credentials, opts ...Option) (*Client, error) {
	if creds.AccessToken == "" || creds.RefreshToken == "" {
		return nil, errors.New("parley: resume: credentials hold no tokens")
	}
	cfg := newClientConfig(opts)
	return newClient(baseURL, cfg, newAnonAuth(baseURL, cfg), creds), nil
}

func newClient(baseURL string, cfg *clientConfig, anon parleyv1connect.AuthServiceClient, creds Credentials) *Client {
	tokens := newTokenManager(anon, creds, cfg)
	interceptors := append([]connect.ClientInterceptor{tokens.interceptor}, cfg.interceptors...)
	cc := connect.NewClient(connecthttp.NewTransport(cfg.httpClient, baseURL, cfg.transportOptions...), interceptors...)
	return &Client{
		baseURL:       baseURL,
		cfg:           cfg,
		tokens:        tokens,
		auth:          parleyv1connect.NewAuthServiceClient(cc),
		chat:          parleyv1connect.NewChatServiceClient(cc),
		conversations: parleyv1connect.NewConversationServiceClient(cc),
		media:         parleyv1connect.NewMediaServiceClient(cc),
		logger:        cfg.logger,
	}
}

// Credentials returns a copy of the device's current credentials. After a
// refresh the previous copy's refresh token is spent; persist the new one
// (see [WithCredentialsHook]).
func (c *Client) Credentials() Credentials {
	creds, _ := c.tokens.snapshot()
	return creds
}

// UserID returns the signed-in user's id.
func (c *Client) UserID() string { return c.Credentials().UserID }

// DeviceID returns this device's id.
func (c *Client) DeviceID() string { return c.Credentials().DeviceID }

// Conversations returns the ConversationService client, authenticated as this
// device. Errors are the server's Connect errors (connect.CodeOf).
func (c *Client) Conversations() parleyv1connect.ConversationServiceClient {
	return c.conversations
}

// Chat returns the ChatService client, authenticated as this device: unary
// SendMessage, MarkRead, RecallMessage, GetHistory and the rest. Most
// applications use a [Session] for the stream and for sending.
func (c *Client) Chat() parleyv1connect.ChatServiceClient {
	return c.chat
}

// Refresh trades the refresh token for a new pair now, even if the access
// token is still valid. Concurrent calls cause one refresh.
func (c *Client) Refresh(ctx context.Context) error {
	creds, err := c.tokens.snapshot()
	if err != nil {
		return err
	}
	return c.tokens.refresh(ctx, creds.AccessToken)
}

// Logout revokes this device's session on the server. Afterwards every call
// on c fails with an error wrapping [ErrRevoked]; open Sessions end.
func (c *Client) Logout(ctx context.Context) error {
	if _, err := c.auth.Logout(ctx, &parleyv1.LogoutRequest{}); err != nil {
		return fmt.Errorf("parley: logout: %w", err)
	}
	_ = c.tokens.revoke(fmt.Errorf("%w: %w", ErrRevoked, connect.NewError(connect.CodeUnauthenticated, "logged out")))
	return nil
}

// LookupUser resolves a username to a user.
func (c *Client) LookupUser(ctx context.Context, username string) (*parleyv1.User, error) {
	res, err := c.conversations.LookupUser(ctx, &parleyv1.LookupUserRequest{Username: username})
	if err != nil {
		return nil, err
	}
	return res.GetUser(), nil
}

// History returns up to limit messages of a conversation after seq afterSeq
// (exclusive), in ascending seq order, and whether more follow. limit 0 means
// the server's default (50); the server caps it at 200.
func (c *Client) History(ctx context.Context, conversationID string, afterSeq uint64, limit uint32) ([]*parleyv1.Message, bool, error) {
	res, err := c.chat.GetHistory(ctx, &parleyv1.GetHistoryRequest{
		ConversationId: conversationID,
		AnchorSeq:      afterSeq,
		Direction:      parleyv1.HistoryDirection_HISTORY_DIRECTION_AFTER,
		Limit:          limit,
	})
	if err != nil {
		return nil, false, err
	}
	return res.GetMessages(), res.GetHasMore(), nil
}

// Search returns a page of the messages whose text holds every word of
// query (the last one also as a prefix; case and diacritics do not
// matter), in the caller's conversations or only in conversationID when
// it is not empty, newest first, and the token of the next page ("" after
// the last). pageToken "" starts at the newest; pageSize 0 means the
// server's default (20), at most 100. Each result's Highlights mark the
// matching words in its Snippet, in Unicode code points
// ([]rune(snippet)[start:end]). Other filters (a time range) are on
// Chat().SearchMessages.
func (c *Client) Search(ctx context.Context, query, conversationID, pageToken string, pageSize uint32) ([]*parleyv1.SearchResult, string, error) {
	res, err := c.chat.SearchMessages(ctx, &parleyv1.SearchMessagesRequest{
		Query:          query,
		ConversationId: conversationID,
		PageToken:      pageToken,
		PageSize:       pageSize,
	})
	if err != nil {
		return nil, "", err
	}
	return res.GetResults(), res.GetNextPageToken(), nil
}

func newAnonAuth(baseURL string, cfg *clientConfig) parleyv1connect.AuthServiceClient {
	cc := connect.NewClient(connecthttp.NewTransport(cfg.httpClient, baseURL, cfg.transportOptions...), cfg.interceptors...)
	return parleyv1connect.NewAuthServiceClient(cc)
}

func credentialsOf(user *parleyv1.User, deviceID string, tokens *parleyv1.Tokens) Credentials {
	creds := Credentials{UserID: user.GetId(), Username: user.GetUsername(), DeviceID: deviceID}
	applyTokens(&creds, tokens)
	return creds
}
