/*
 * ConmgrConnection.java
 *	  What a connection made through conmgr adds to java.sql.Connection.
 *
 *	  Connection c = DriverManager.getConnection("jdbc:conmgr://localhost:27546/app?targetServerType=primary");
 *	  if (c.isWrapperFor(ConmgrConnection.class))
 *	      System.out.println(c.unwrap(ConmgrConnection.class).getInstancePort());
 *
 *	  A connection the driver made straight to a server (a host of the URL
 *	  that is a postmaster, not conmgr) is pgJDBC's own and is not one.
 */
package org.conmgr.jdbc;

public interface ConmgrConnection
{
	/* The instance reached: conmgr's name or address for it, its port, its number in conmgr.conf. */
	String getInstanceHost();

	int getInstancePort();

	int getInstanceId();

	/* The conmgr that was asked. */
	String getConmgrHost();

	int getConmgrPort();

	/* Whether conmgr reported the instance lost (or went away); why. */
	boolean isInstanceLost();

	String getLossReason();
}
