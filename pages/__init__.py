"""The top layer: pages shown inside Bitrix24's frames (the app slider, settings, dashboard, the robot
settings placement).  Uses every layer below; nothing imports it."""
