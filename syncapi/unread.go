package syncapi

import (
	"context"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/storage"
)

// syncUnread fills the notification counts of every joined room in the response, whether it
// is there for new events, receipts (which move the counts down) or account data.
func (s *Server) syncUnread(ctx context.Context, req syncRequest, _, _ Token, resp *syncResponse, memberships []storage.Membership) error {
	for _, m := range memberships {
		jr, ok := resp.Rooms.Join[m.RoomID]
		if !ok || m.Membership != spec.Join {
			continue
		}
		var err error
		if jr.UnreadNotifications, jr.UnreadThreadNotifications, err = s.unreadCounts(ctx, req, m); err != nil {
			return err
		}
	}
	return nil
}

// unreadCounts returns the notification counts of a joined room for the user: the
// notifications (push actions stored when events committed) after their read receipts
// (client-server API, "Receiving notifications"). With the filter's
// room.timeline.unread_thread_notifications, unread_notifications counts the main timeline
// only and each thread with notifications gets its own counts, keyed by its root; otherwise
// unread_notifications counts the whole room. One query on the primary key of
// event_push_actions (user, room, event) per room.
func (s *Server) unreadCounts(ctx context.Context, req syncRequest, m storage.Membership) (unreadCounts, map[string]unreadCounts, error) {
	byThread, err := s.db.UnreadCounts(ctx, req.viewer.UserID, m.RoomNID)
	if err != nil {
		return unreadCounts{}, nil, err
	}
	split := req.filter.Room.Timeline.UnreadThreadNotifications
	var total unreadCounts
	var threads map[string]unreadCounts
	for thread, c := range byThread {
		counts := unreadCounts{HighlightCount: c.Highlights, NotificationCount: c.Notifications}
		if !split || thread == storage.ThreadMain {
			total.HighlightCount += counts.HighlightCount
			total.NotificationCount += counts.NotificationCount
			continue
		}
		if threads == nil {
			threads = map[string]unreadCounts{}
		}
		threads[thread] = counts
	}
	return total, threads, nil
}
