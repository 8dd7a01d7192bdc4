package adminapi

import "context"

// Media is what the admin API needs of the media repository (mediaapi.Server): deleting an
// item removes its rows and its files, content and thumbnails, from the media store.
type Media interface {
	DeleteMedia(ctx context.Context, serverName, mediaID string) error
}
