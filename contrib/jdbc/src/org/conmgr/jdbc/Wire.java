/*
 * Wire.java
 *	  The application side of conmgr's protocol (docs/protocol.md, section 2)
 *	  over one socket: the probe, HELLO, RESOLVE, the candidates, ATTACHED.
 *	  All integers are big-endian (ByteBuffer's default).
 */
package org.conmgr.jdbc;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.net.StandardSocketOptions;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.channels.UnresolvedAddressException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

final class Wire implements AutoCloseable
{
	/* PostgreSQL's GSSENCRequest: length 8, code 80877104. */
	private static final byte[] PROBE = { 0, 0, 0, 8, 0x04, (byte) 0xd2, 0x16, 0x30 };
	private static final int HELLO_MAGIC = 0x434D4752;	/* "CMGR" */
	static final int VERSION = 1;
	private static final int MAX_MSG = 512;
	private static final int MAX_ERROR_RESPONSE = 10000;
	private static final int MAX_APPNAME = 63;
	private static final int MAX_HOST = 255;
	private static final int ADDR_NUMERIC = 1;
	private static final Pattern HOST_NAME = Pattern.compile("[A-Za-z0-9_-]{1,63}(\\.[A-Za-z0-9_-]{1,63})*");
	private static final Pattern IPV4 = Pattern.compile(
		"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])");
	private static final Pattern IPV6_CHARS = Pattern.compile("[0-9A-Fa-f:][0-9A-Fa-f:.]{1,44}");

	/* What answered the probe. */
	enum Kind
	{
		POSTMASTER, CONMGR
	}

	/* One CANDIDATE frame. */
	static final class Candidate
	{
		final int instance;
		final int port;
		final int attrs;
		final String host;

		Candidate(int instance, int port, int attrs, String host)
		{
			this.instance = instance;
			this.port = port;
			this.attrs = attrs;
			this.host = host;
		}

		@Override
		public String toString()
		{
			return "instance " + instance + " at " + host + ":" + port;
		}
	}

	/* ERROR from conmgr: code and message. */
	static final class ConmgrError extends IOException
	{
		private static final long serialVersionUID = 1L;

		ConmgrError(int code, String message)
		{
			super("conmgr error " + code + ": " + message);
		}
	}

	private final SocketChannel ch;
	private final long deadline;		/* System.nanoTime() */
	private boolean conmgr;				/* HELLO read: a session with conmgr */

	private Wire(SocketChannel ch, long deadline)
	{
		this.ch = ch;
		this.deadline = deadline;
	}

	/* Connect to host:port, non-blocking, before the deadline. */
	static Wire open(String host, int port, long deadline) throws IOException
	{
		SocketChannel ch = SocketChannel.open();
		Wire w = new Wire(ch, deadline);

		try
		{
			ch.configureBlocking(false);
			ch.socket().setTcpNoDelay(true);
			if (!ch.connect(new InetSocketAddress(host, port)))
			{
				w.await(SelectionKey.OP_CONNECT);
				while (!ch.finishConnect())
					w.await(SelectionKey.OP_CONNECT);
			}
		}
		catch (UnresolvedAddressException e)
		{
			ch.close();
			throw new IOException("could not translate host name \"" + host + "\" to an address");
		}
		catch (IOException | RuntimeException e)
		{
			ch.close();
			throw e;
		}
		return w;
	}

	SocketChannel channel()
	{
		return ch;
	}

	/*
	 * A session with conmgr ends with a reset (SO_LINGER 0), as libpq-cm ends
	 * its own: nothing is left to say on it, and an orderly close would leave
	 * a TIME_WAIT socket on this host per connection (docs/protocol.md, 2.3).
	 * A probe that found a postmaster is closed normally.
	 */
	@Override
	public void close()
	{
		try
		{
			if (conmgr && ch.isOpen())
				ch.setOption(StandardSocketOptions.SO_LINGER, 0);
		}
		catch (IOException e)
		{
			/* closed normally then */
		}
		try
		{
			ch.close();
		}
		catch (IOException e)
		{
			/* nothing more to do */
		}
	}

	/* Wait for one readiness event, or fail at the deadline. */
	private void await(int op) throws IOException
	{
		long left = (deadline - System.nanoTime()) / 1_000_000;

		if (left <= 0)
			throw new SocketTimeoutException("timeout expired");
		try (Selector sel = Selector.open())
		{
			ch.register(sel, op);
			if (sel.select(left) == 0 && deadline - System.nanoTime() <= 0)
				throw new SocketTimeoutException("timeout expired");
		}
	}

	private void writeAll(ByteBuffer b) throws IOException
	{
		b.flip();
		while (b.hasRemaining())
			if (ch.write(b) == 0)
				await(SelectionKey.OP_WRITE);
	}

	/* Exactly n bytes; null on end of file before the first when eofOk. */
	private ByteBuffer read(int n, boolean eofOk) throws IOException
	{
		ByteBuffer b = ByteBuffer.allocate(n);

		while (b.hasRemaining())
		{
			int r = ch.read(b);

			if (r < 0)
			{
				if (eofOk && b.position() == 0)
					return null;
				throw new IOException("connection closed by the other side");
			}
			if (r == 0)
				await(SelectionKey.OP_READ);
		}
		b.flip();
		return b;
	}

	/*
	 * Send the probe: a postmaster answers G or N; conmgr an ErrorResponse,
	 * then HELLO.  A server that only answers an ErrorResponse and hangs up
	 * (older than PostgreSQL 12, which knows no GSSENCRequest) is a
	 * postmaster too.  A conmgr on loopback must be run by a trusted user
	 * (Trust.checkOwner), else an IOException says who runs it.
	 */
	Kind probe() throws IOException
	{
		ByteBuffer b = ByteBuffer.allocate(PROBE.length);

		b.put(PROBE);
		writeAll(b);
		byte first = read(1, false).get();

		if (first == 'G' || first == 'N')
			return Kind.POSTMASTER;
		if (first != 'E')
			throw new IOException("neither PostgreSQL nor conmgr answered (first byte " + (first & 0xff) + ")");
		int len = read(4, false).getInt();

		if (len < 4 || len > MAX_ERROR_RESPONSE)
			throw new IOException("neither PostgreSQL nor conmgr answered (error length " + len + ")");
		read(len - 4, false);
		ByteBuffer hello = readFrame(true);

		if (hello == null)
			return Kind.POSTMASTER;
		if (hello.get() != 'H' || hello.remaining() != 8 || hello.getInt() != HELLO_MAGIC)
			throw new IOException("conmgr protocol violation: bad HELLO");
		int min = hello.getShort() & 0xffff;
		int max = hello.getShort() & 0xffff;

		if (((InetSocketAddress) ch.getRemoteAddress()).getAddress().isLoopbackAddress())
			Trust.checkOwner(ch);
		conmgr = true;
		if (min > VERSION || max < VERSION)
			throw new IOException("conmgr speaks protocol versions " + min + " to " + max + ", this driver " + VERSION);
		return Kind.CONMGR;
	}

	/*
	 * One frame: its type byte, then its body (the 4-byte header checked
	 * and skipped).  null on end of file before it when eofOk.
	 */
	private ByteBuffer readFrame(boolean eofOk) throws IOException
	{
		ByteBuffer h = read(4, eofOk);

		if (h == null)
			return null;
		byte type = h.get();
		byte flags = h.get();
		int len = h.getShort() & 0xffff;

		if (flags != 0 || len < 4 || len > MAX_MSG)
			throw new IOException("conmgr protocol violation: bad frame header");
		ByteBuffer body = read(len - 4, false);
		ByteBuffer f = ByteBuffer.allocate(len - 3);

		f.put(type).put(body).flip();
		return f;
	}

	/*
	 * A candidate's host goes into pgJDBC's URL, so it must be what its
	 * addr_kind says and nothing that URL could read as more (a host list,
	 * a path, parameters): common/cmhost.c's rule, as libpq-cm applies it.
	 * A host name is DNS labels of letters, digits, '-' and '_', 1..63
	 * each; a numeric address is IPv4 dotted or IPv6 (no lookup is made:
	 * InetAddress gets only strings with a ':' that start with a hexadecimal
	 * digit or ':', which it parses as IPv6 literals or refuses).
	 */
	static boolean validHost(String h, int kind)
	{
		boolean numeric = IPV4.matcher(h).matches() || isIpv6(h);

		if (kind == ADDR_NUMERIC)
			return numeric;
		return numeric || (h.length() <= MAX_HOST && HOST_NAME.matcher(h).matches());
	}

	private static boolean isIpv6(String h)
	{
		if (h.indexOf(':') < 0 || !IPV6_CHARS.matcher(h).matches())
			return false;
		try
		{
			InetAddress.getByName(h);	/* a literal: parsed, never looked up */
			return true;
		}
		catch (UnknownHostException e)
		{
			return false;
		}
	}

	/* h with everything but printable ASCII (and \ ") as \xNN, for an error. */
	private static String escape(String h)
	{
		StringBuilder b = new StringBuilder();

		for (byte c : h.getBytes(StandardCharsets.UTF_8))
		{
			if (b.length() >= 256)
				return b + "...";
			if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
				b.append((char) c);
			else
				b.append(String.format("\\x%02x", c & 0xff));
		}
		return b.toString();
	}

	private static String string(ByteBuffer b) throws IOException
	{
		int n = b.getShort() & 0xffff;

		if (n > b.remaining())
			throw new IOException("conmgr protocol violation: truncated string");
		byte[] s = new byte[n];

		b.get(s);
		return new String(s, StandardCharsets.UTF_8);
	}

	/* RESOLVE, then the candidates in conmgr's order (maybe none). */
	List<Candidate> resolve(int target, long pid, String appName) throws IOException
	{
		byte[] name = appNameBytes(appName);
		int len = 4 + 2 + 1 + 1 + 4 + 2 + name.length;
		ByteBuffer b = ByteBuffer.allocate(len);

		b.put((byte) 'R').put((byte) 0).putShort((short) len);
		b.putShort((short) VERSION).put((byte) target).put((byte) 0).putInt((int) pid);
		b.putShort((short) name.length).put(name);
		writeAll(b);

		List<Candidate> list = new ArrayList<>();

		for (;;)
		{
			ByteBuffer f = readFrame(false);
			byte type = f.get();

			if (type == 'C')
			{
				int instance = f.getShort() & 0xffff;
				int port = f.getShort() & 0xffff;
				int attrs = f.get() & 0xff;

				int kind = f.get() & 0xff;
				String host = string(f);

				if (!validHost(host, kind))
					throw new IOException("conmgr named an invalid candidate host \"" + escape(host)
										  + "\" for instance " + instance + ": not a "
										  + (kind == ADDR_NUMERIC ? "numeric address" : "host name or address"));
				list.add(new Candidate(instance, port, attrs, host));
			}
			else if (type == 'Z')
			{
				int count = f.getShort() & 0xffff;

				if (count != list.size())
					throw new IOException("conmgr protocol violation: " + list.size() + " candidates, count " + count);
				return list;
			}
			else if (type == 'X')
			{
				int code = f.getShort() & 0xffff;

				throw new ConmgrError(code, string(f));
			}
			else
				throw new IOException("conmgr protocol violation: unexpected message '" + (char) type + "'");
		}
	}

	/* ATTACHED: the application is connected to that instance. */
	void attached(int instance, int backendPid) throws IOException
	{
		ByteBuffer b = ByteBuffer.allocate(10);

		b.put((byte) 'A').put((byte) 0).putShort((short) 10);
		b.putShort((short) instance).putInt(backendPid);
		writeAll(b);
	}

	/* application_name: at most 63 bytes of UTF-8, cut between characters, no NUL. */
	private static byte[] appNameBytes(String s)
	{
		String clean = s == null ? "" : s.replace("\0", "");
		byte[] all = clean.getBytes(StandardCharsets.UTF_8);
		int n = Math.min(all.length, MAX_APPNAME);

		while (n > 0 && n < all.length && (all[n] & 0xc0) == 0x80)
			n--;
		byte[] out = new byte[n];

		System.arraycopy(all, 0, out, 0, n);
		return out;
	}
}
