package adminapi

import "context"

// DeviceListSink tells other servers that a local user's devices changed: the federation
// API's outbound device-list EDUs. Without one (federation off) nothing leaves this server.
type DeviceListSink interface {
	// DeviceListChanged announces the named devices of userID (none named: all of them).
	DeviceListChanged(ctx context.Context, userID string, deviceIDs []string)
}

// SetDeviceListSink makes the user admin API announce the devices it creates, renames and
// deletes (and those a deactivation or password reset removes) to other servers.
func (s *Server) SetDeviceListSink(sink DeviceListSink) { s.deviceLists = sink }
