package route

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/hub"
)

// A stream entry is a small protobuf message, written by hand with
// protowire because it never leaves the cluster (no .proto, no generated
// code for clients). Field numbers are the compatibility contract between
// server versions during a rolling upgrade: add fields, never renumber.
//
//	message Entry {
//	  string   origin       = 1; // node that published it
//	  bool     recheck      = 2; // deliveries may have been lost: recheck
//	  repeated Delivery d   = 3;
//	  string   close_device = 4; // a revoked device: end its stream
//	}
//	message Delivery {
//	  bytes  frame      = 1; // parley.v1.ServerFrame
//	  repeated string users = 2;
//	  bytes  ack        = 3; // parley.v1.ServerFrame, optional
//	  string ack_user   = 4;
//	  string ack_device = 5;
//	}
const (
	entryOrigin     protowire.Number = 1
	entryRecheck    protowire.Number = 2
	entryDeliveries protowire.Number = 3
	entryClose      protowire.Number = 4

	deliveryFrame     protowire.Number = 1
	deliveryUsers     protowire.Number = 2
	deliveryAck       protowire.Number = 3
	deliveryAckUser   protowire.Number = 4
	deliveryAckDevice protowire.Number = 5
)

// entry is a decoded stream entry.
type entry struct {
	origin      string
	recheck     bool
	deliveries  []hub.Delivery
	closeDevice string
}

// encodedDelivery is a delivery whose frames are already marshalled, so a
// delivery split over several shards is marshalled once.
type encodedDelivery struct {
	frame, ack         []byte
	users              []string
	ackUser, ackDevice string
}

// encodeControl encodes an entry without deliveries: a recheck request or
// a device to disconnect.
func encodeControl(origin string, recheck bool, closeDevice string) []byte {
	b := encodeEntry(origin, recheck, nil)
	if closeDevice != "" {
		b = protowire.AppendTag(b, entryClose, protowire.BytesType)
		b = protowire.AppendString(b, closeDevice)
	}
	return b
}

func encodeEntry(origin string, recheck bool, ds []encodedDelivery) []byte {
	// One allocation for the whole entry: an upper bound of its size
	// (tags and length prefixes take at most 6 bytes each here).
	size := len(origin) + 16
	for _, ed := range ds {
		size += len(ed.frame) + len(ed.ack) + len(ed.ackUser) + len(ed.ackDevice) + 40
		for _, u := range ed.users {
			size += len(u) + 6
		}
	}
	b := make([]byte, 0, size)
	b = protowire.AppendTag(b, entryOrigin, protowire.BytesType)
	b = protowire.AppendString(b, origin)
	if recheck {
		b = protowire.AppendTag(b, entryRecheck, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	var d []byte
	for _, ed := range ds {
		d = d[:0]
		d = protowire.AppendTag(d, deliveryFrame, protowire.BytesType)
		d = protowire.AppendBytes(d, ed.frame)
		for _, u := range ed.users {
			d = protowire.AppendTag(d, deliveryUsers, protowire.BytesType)
			d = protowire.AppendString(d, u)
		}
		if ed.ack != nil {
			d = protowire.AppendTag(d, deliveryAck, protowire.BytesType)
			d = protowire.AppendBytes(d, ed.ack)
			d = protowire.AppendTag(d, deliveryAckUser, protowire.BytesType)
			d = protowire.AppendString(d, ed.ackUser)
			d = protowire.AppendTag(d, deliveryAckDevice, protowire.BytesType)
			d = protowire.AppendString(d, ed.ackDevice)
		}
		b = protowire.AppendTag(b, entryDeliveries, protowire.BytesType)
		b = protowire.AppendBytes(b, d)
	}
	return b
}

var errMalformed = errors.New("malformed entry")

func decodeEntry(b []byte) (entry, error) {
	var e entry
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == entryOrigin && typ == protowire.BytesType:
			e.origin = string(v)
		case num == entryRecheck && typ == protowire.VarintType:
			e.recheck = n != 0
		case num == entryClose && typ == protowire.BytesType:
			e.closeDevice = string(v)
		case num == entryDeliveries && typ == protowire.BytesType:
			d, err := decodeDelivery(v)
			if err != nil {
				return err
			}
			e.deliveries = append(e.deliveries, d)
		}
		return nil
	})
	return e, err
}

func decodeDelivery(b []byte) (hub.Delivery, error) {
	var d hub.Delivery
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case deliveryFrame:
			d.Frame = new(parleyv1.ServerFrame)
			if err := proto.Unmarshal(v, d.Frame); err != nil {
				return fmt.Errorf("frame: %w", err)
			}
		case deliveryUsers:
			d.Users = append(d.Users, string(v))
		case deliveryAck:
			d.Ack = new(parleyv1.ServerFrame)
			if err := proto.Unmarshal(v, d.Ack); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		case deliveryAckUser:
			d.AckUser = string(v)
		case deliveryAckDevice:
			d.AckDevice = string(v)
		}
		return nil
	})
	if err == nil && d.Frame == nil {
		err = fmt.Errorf("%w: delivery without a frame", errMalformed)
	}
	return d, err
}

// eachField walks the fields of a protobuf message, skipping unknown ones
// (written by a newer server). Bytes fields get v, varints n.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(l))
		}
		b = b[l:]
		var v []byte
		var n uint64
		switch typ {
		case protowire.BytesType:
			v, l = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			n, l = protowire.ConsumeVarint(b)
		default:
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			return fmt.Errorf("%w: %w", errMalformed, protowire.ParseError(l))
		}
		b = b[l:]
		if err := fn(num, typ, v, n); err != nil {
			return err
		}
	}
	return nil
}
