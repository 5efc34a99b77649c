from dalal_portfolio.app import NAME, build_app
from dalal_portfolio.config import PortfolioSettings
from dalal_shared.service import main_for

if __name__ == "__main__":
    main_for(NAME, PortfolioSettings, build_app)
