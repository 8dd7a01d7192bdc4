package appservice

import (
	"context"
	"os"
	"reflect"
)

// Reload reads the registration files listed in the configuration again (the list itself
// is read only at start) and applies them: services that are new or whose registration
// changed get their sender user and positions and a new sender, after the old one of a
// changed service has stopped (its unacknowledged transactions are sent by the new one,
// under the same IDs); removed services stop being sent to and lose their tokens. A bad
// file changes nothing: the error is returned and the running services stay.
func (s *Server) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	c := *s.cfg
	list, err := c.LoadAppServices()
	if err != nil {
		return err
	}
	c.AppServices = list
	old := s.registry()
	next := NewRegistry(&c)
	var added []*Service
	for i, svc := range next.list {
		if o := old.byID[svc.ID]; o != nil && reflect.DeepEqual(o.AppService, svc.AppService) {
			next.list[i], next.byID[svc.ID] = o, o // unchanged: its sender goes on
			continue
		}
		if err := s.prepare(ctx, svc); err != nil {
			return err
		}
		added = append(added, svc)
	}
	// Stop the senders of removed and changed services before any new sender of the same
	// service starts: one sender per service at a time.
	var senders []*sender
	for _, snd := range s.senderList() {
		if next.byID[snd.svc.ID] == snd.svc {
			senders = append(senders, snd)
			continue
		}
		if snd.cancel != nil {
			snd.cancel()
			<-snd.done
		}
	}
	s.regs.Store(next)
	var started []*sender
	for _, svc := range added {
		if svc.HasURL() {
			started = append(started, newSender(s, svc))
		}
	}
	senders = append(senders, started...)
	s.senders.Store(&senders)
	if s.runCtx != nil && s.runCtx.Err() == nil { // started and not closed
		if err := s.startSenders(ctx, started); err != nil {
			return err
		}
	}
	s.log.Info("application services reloaded", "count", len(next.list), "new_or_changed", len(added))
	return nil
}

// ReloadOn calls Reload each time a signal arrives on signals (SIGHUP), until ctx ends.
func (s *Server) ReloadOn(ctx context.Context, signals <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-signals:
			if err := s.Reload(ctx); err != nil {
				s.log.Error("application services not reloaded", "err", err)
			}
		}
	}
}
