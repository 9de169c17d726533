/*
 * Watcher.java
 *	  One daemon thread per JVM that waits on the conmgr sockets of every
 *	  open connection.  conmgr writes on such a socket only to say that the
 *	  instance is lost (INSTANCE_DOWN), and closes it when it stops: either
 *	  way the connection is aborted (Connection.abort), so that a statement
 *	  blocked on it fails at once with pgJDBC's I/O error (SQLState 08006).
 *	  Once a second it also drops the sockets of connections that the
 *	  application closed without going through our proxy.
 */
package org.conmgr.jdbc;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.sql.SQLException;
import java.util.Iterator;
import java.util.concurrent.ConcurrentLinkedQueue;

final class Watcher implements Runnable
{
	private static Watcher instance;

	private final Selector selector;
	private final ConcurrentLinkedQueue<Session> pending = new ConcurrentLinkedQueue<>();

	private Watcher() throws IOException
	{
		selector = Selector.open();
	}

	static synchronized Watcher get() throws IOException
	{
		if (instance == null)
		{
			instance = new Watcher();
			Thread t = new Thread(instance, "conmgr-watcher");

			t.setDaemon(true);
			t.start();
		}
		return instance;
	}

	/* Watch a session's conmgr socket (already switched to non-blocking). */
	void watch(Session s)
	{
		pending.add(s);
		selector.wakeup();
	}

	@Override
	public void run()
	{
		for (;;)
		{
			try
			{
				selector.select(1000);
				for (Session s; (s = pending.poll()) != null;)
				{
					try
					{
						s.cm.channel().register(selector, SelectionKey.OP_READ, s);
					}
					catch (ClosedChannelException e)
					{
						/* closed by the application already */
					}
				}
				Iterator<SelectionKey> it = selector.selectedKeys().iterator();

				while (it.hasNext())
				{
					SelectionKey k = it.next();

					it.remove();
					if (k.isValid() && k.isReadable())
						check((Session) k.attachment());
				}
				for (SelectionKey k : selector.keys())
				{
					Session s = (Session) k.attachment();

					if (k.isValid() && (s.released() || closedByApplication(s)))
					{
						k.cancel();
						s.release();
					}
				}
			}
			catch (IOException | RuntimeException e)
			{
				/* keep watching the others */
			}
		}
	}

	private static boolean closedByApplication(Session s)
	{
		try
		{
			return s.real.isClosed();
		}
		catch (SQLException e)
		{
			return true;
		}
	}

	/*
	 * Read what conmgr sent on a session's socket, if anything: a
	 * down-notice, an error or end of file loses the session.  Called by
	 * this thread when the socket turns readable, and by an application
	 * asking whether its instance is lost (Session.loss), which may come
	 * first: after conmgr died, the watchdog's terminator can end the SQL
	 * session, and a statement fail, before this thread has run.  The
	 * session's lock makes a notice read by one of them seen by the other.
	 */
	static void check(Session s)
	{
		synchronized (s)
		{
			String reason;
			ByteBuffer buf = ByteBuffer.allocate(512);

			if (s.released())
				return;
			try
			{
				int n = s.cm.channel().read(buf);

				if (n == 0)
					return;
				if (n < 0)
					reason = "conmgr closed the connection";
				else if (buf.get(0) == 'D' && n >= 7)
					reason = "instance " + (buf.getShort(4) & 0xffff) + " lost: " + downReason(buf.get(6));
				else if (buf.get(0) == 'X')
					reason = "conmgr sent an error";
				else
					reason = "conmgr sent an unexpected message";
			}
			catch (IOException e)
			{
				reason = "conmgr connection failed: " + e.getMessage();
			}
			/* closing the socket (release) cancels its key */
			s.lose(reason);
		}
	}

	private static String downReason(byte r)
	{
		switch (r)
		{
			case 1:
				return "heartbeat timeout";
			case 2:
				return "heartbeat connection lost";
			case 3:
				return "the watchdog broke the protocol";
			case 4:
				return "conmgr is shutting down";
			default:
				return "reason " + (r & 0xff);
		}
	}
}
