/*
 * Session.java
 *	  One connection made through conmgr: pgJDBC's connection to the
 *	  instance and the socket to conmgr, kept open for its down-notice.
 *	  The application gets a proxy that is the pgJDBC connection in every
 *	  respect except close() and abort(), which also close conmgr's socket,
 *	  and unwrap(ConmgrConnection.class).
 */
package org.conmgr.jdbc;

import java.lang.reflect.InvocationHandler;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.sql.Connection;
import java.util.LinkedHashSet;
import java.util.Set;

final class Session implements InvocationHandler, ConmgrConnection
{
	final Wire cm;
	final Connection real;
	private final Wire.Candidate cand;
	private final String cmHost;
	private final int cmPort;
	private final Connection proxy;
	private volatile String lossReason;
	private volatile boolean released;

	Session(Wire cm, Connection real, Wire.Candidate cand, String cmHost, int cmPort)
	{
		this.cm = cm;
		this.real = real;
		this.cand = cand;
		this.cmHost = cmHost;
		this.cmPort = cmPort;

		Set<Class<?>> ifaces = new LinkedHashSet<>();

		for (Class<?> c = real.getClass(); c != null; c = c.getSuperclass())
			for (Class<?> i : c.getInterfaces())
				ifaces.add(i);
		ifaces.add(Connection.class);
		ifaces.add(ConmgrConnection.class);
		proxy = (Connection) Proxy.newProxyInstance(Session.class.getClassLoader(),
													ifaces.toArray(new Class<?>[0]), this);
	}

	Connection proxy()
	{
		return proxy;
	}

	@Override
	public Object invoke(Object p, Method m, Object[] args) throws Throwable
	{
		try
		{
			if (m.getDeclaringClass() == ConmgrConnection.class)
				return m.invoke(this, args);
			switch (m.getName())
			{
				case "close":
				case "abort":
					try
					{
						return m.invoke(real, args);
					}
					finally
					{
						release();
					}
				case "unwrap":
					if (((Class<?>) args[0]).isInstance(proxy))
						return proxy;
					break;
				case "isWrapperFor":
					if (((Class<?>) args[0]).isInstance(proxy))
						return true;
					break;
				case "equals":
					return p == args[0];
				case "hashCode":
					return System.identityHashCode(p);
				case "toString":
					return "conmgr " + cmHost + ":" + cmPort + " -> " + cand + ": " + real;
				default:
					break;
			}
			return m.invoke(real, args);
		}
		catch (InvocationTargetException e)
		{
			throw e.getCause();
		}
	}

	/*
	 * conmgr said the instance is lost (or closed our socket): abort the
	 * SQL connection, so that whatever waits on it fails now.  Called by
	 * Watcher.check, under the session's lock.
	 */
	void lose(String reason)
	{
		lossReason = reason;
		try
		{
			real.abort(Runnable::run);
		}
		catch (Exception | LinkageError e)
		{
			/* the connection is closed already, or cannot be aborted */
		}
		release();
	}

	/* Close conmgr's socket (once); the watcher drops it. */
	void release()
	{
		if (!released)
		{
			released = true;
			cm.close();
		}
	}

	boolean released()
	{
		return released;
	}

	@Override
	public String getInstanceHost()
	{
		return cand.host;
	}

	@Override
	public int getInstancePort()
	{
		return cand.port;
	}

	@Override
	public int getInstanceId()
	{
		return cand.instance;
	}

	@Override
	public String getConmgrHost()
	{
		return cmHost;
	}

	@Override
	public int getConmgrPort()
	{
		return cmPort;
	}

	/*
	 * Why the instance is lost, or null: what the watcher thread has read
	 * on conmgr's socket, or else what is waiting there now.
	 */
	private String loss()
	{
		if (lossReason == null)
			Watcher.check(this);
		return lossReason;
	}

	@Override
	public boolean isInstanceLost()
	{
		return loss() != null;
	}

	@Override
	public String getLossReason()
	{
		return loss();
	}
}
